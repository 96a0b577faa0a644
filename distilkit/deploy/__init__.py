"""Deployment: ONNX export of every student, ONNX Runtime inference, the predict command (issue 16)."""
