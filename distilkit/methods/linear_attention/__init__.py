"""Linear attention (elu, Performer, Hedgehog, Linformer) swapped into a pretrained encoder and recovered by distillation."""
