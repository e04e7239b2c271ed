import Model

/// The peak memory of quantizing an FP model in one piece (`lowbit quantize`), checked before the model is
/// loaded: the FP32 weights, their reordered or quantized copies and the output file's bytes are all held
/// at once, about `bytesPerParameter` bytes per parameter at the peak (measured with `/usr/bin/time -v` on
/// 8 layers of the llama-7b preset: 15.3 GB resident for W8A8 and 14.6 GB for W4A4, 1.85 billion
/// parameters, the mapped fp16 file included). A model past what the host has available is refused with
/// the number of layers that would fit, instead of being killed by the kernel partway.
public enum QuantizationMemory {
    public static let bytesPerParameter = 8

    /// Parameters of `config` with only its first `layers` decoder layers (all of them when nil).
    public static func parameters(_ config: LlamaConfig, layers: Int? = nil) -> Int {
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        return config.parameterCount - (config.numHiddenLayers - kept) * config.parametersPerLayer
    }

    /// Estimated peak bytes of quantizing `config` cut to `layers` layers.
    public static func peakBytes(_ config: LlamaConfig, layers: Int? = nil) -> Int {
        bytesPerParameter * parameters(config, layers: layers)
    }

    /// The most decoder layers whose quantization fits in `availableBytes` (0 when not even one does).
    public static func layersThatFit(_ config: LlamaConfig, availableBytes: Int) -> Int {
        let fixed = peakBytes(config, layers: 0)
        guard availableBytes > fixed else { return 0 }
        return min(config.numHiddenLayers, (availableBytes - fixed) / (bytesPerParameter * config.parametersPerLayer))
    }

    /// Throws, saying what would fit, when the estimate for `model` exceeds `availableBytes` (nil: unknown,
    /// nothing is checked).
    public static func check(_ config: LlamaConfig, layers: Int?, availableBytes: Int?, model: String) throws {
        guard let availableBytes else { return }
        let needed = peakBytes(config, layers: layers)
        guard needed > availableBytes else { return }
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        let fit = layersThatFit(config, availableBytes: availableBytes)
        func gb(_ b: Int) -> String { String(format: "%.1f GB", Double(b) / 1e9) }
        let advice = fit > 0
            ? "pass --layers \(fit) or fewer (the first layers of the model), or run on a machine with more memory"
            : "not even one layer fits: run on a machine with more memory"
        throw ModelError.invalidInput(
            "quantizing \(model) (\(kept) layers, \(String(format: "%.2f", Double(parameters(config, layers: layers)) / 1e9)) billion parameters) "
                + "needs about \(gb(needed)) of memory at its peak (the FP32 weights, their quantized copy and the output file are held at "
                + "once, about \(bytesPerParameter) bytes per parameter), and this machine has \(gb(availableBytes)) available: \(advice); "
                + "--skip-memory-check runs it anyway")
    }
}
