"""Weights in and out: the safetensors format (read and written by rnnlab itself, no
package needed), and later torch checkpoints, ONNX and Keras. Depends on rnnlab.nn."""
from .safetensors import load_safetensors, save_safetensors

__all__ = ["load_safetensors", "save_safetensors"]
