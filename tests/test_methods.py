"""The method interface (core/method_hooks.py, run/methods.py): which methods a recipe switches on, and how
their optimizer groups combine."""

import pytest
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.core.method_hooks import MethodHooks
from distilkit.run.methods import active_methods, parameter_groups
from distilkit.run.recipe_io import validate_recipe


def recipe(tmp_path, **sections):
    tree = {"task": "sst2", "output_dir": str(tmp_path), "teacher": {"model": "prajjwal1/bert-tiny"},
            "student": {"kind": "bilstm"}, **sections}
    return validate_recipe(tree)


@pytest.mark.parametrize("sections, names", [
    ({}, []),
    ({"quantize": {"linear": "int8"}}, ["quantization"]),
    ({"student": {"kind": "pruned", "heads": 0.5, "rounds": 2}}, []),  # rounds are pipeline stages, not hooks
    ({"student": {"kind": "pruned", "heads": 0.5}}, []),  # one-shot: the student kind alone does it
    ({"student": {"kind": "linear_attention"}, "quantize": {"linear": "int8", "qat": True}},
     ["linear_attention", "quantization"]),
])
def test_a_recipe_switches_on_exactly_its_methods(tmp_path, sections, names):
    assert [m.name for m in active_methods(recipe(tmp_path, **sections))] == names


def test_default_group_holds_every_trainable_parameter_once():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    (group,) = parameter_groups(model, [MethodHooks()])
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters() if p.requires_grad}
    assert len(group["params"]) == 3


def test_two_methods_cannot_both_set_the_optimizer_groups():
    class Groups(MethodHooks):
        def __init__(self, name):
            self.name = name

        def parameter_groups(self, student):
            return [{"params": list(student.parameters()), "lr": 1.0}]

    model = nn.Linear(2, 2)
    assert parameter_groups(model, [MethodHooks(), Groups("a")])[0]["lr"] == 1.0
    with pytest.raises(RecipeError, match="a, b each set optimizer parameter groups"):
        parameter_groups(model, [Groups("a"), Groups("b")])


def test_quantization_adds_no_loss_or_groups(tmp_path):
    (method,) = active_methods(recipe(tmp_path, quantize={"linear": "int8"}))
    assert method.extra_losses(nn.Linear(2, 2)) == {}
    assert method.parameter_groups(nn.Linear(2, 2)) is None
