/// The inference path (issue 7): an Atom-quantized Llama decoder on the tuned kernels, with FP32
/// (OpenBLAS) and W8A8 baselines in the same engine.
public enum Inference {}
