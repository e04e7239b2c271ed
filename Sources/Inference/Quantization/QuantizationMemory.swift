import Model

/// The peak memory of quantizing an FP model one layer at a time (`AtomModelQuantizer.quantize(_:layers:
/// settings:)`, `lowbit quantize`), checked before anything is loaded. Held at once: the FP32 embedding,
/// final norm and lm_head; one decoder layer in FP32 and its reordered copy (8 bytes per parameter of a
/// layer); and the layers quantized so far (about 1 byte per parameter for W8A8, 0.6 for W4A4's INT4
/// codes, group scales and INT8 outliers). The model file is mapped, not read: its pages are page cache the
/// kernel can drop, which `MemAvailable` counts. Measured with `/usr/bin/time -v` on 8 layers of the
/// llama-7b preset (fp16 file of 3.7 GB): 7.7 GB resident for W8A8 and 7.1 GB for W4A4, of which about
/// 4.0 and 3.4 GB are not the mapped file, against estimates of 4.3 and 3.6 GB.
public enum QuantizationMemory {
    /// Bytes per parameter of a quantized layer.
    public static func quantizedBytesPerParameter(_ method: QuantizationMethod) -> Double {
        method == .w8a8 ? 1.0 : 0.6
    }

    /// Parameters of `config` with only its first `layers` decoder layers (all of them when nil).
    public static func parameters(_ config: LlamaConfig, layers: Int? = nil) -> Int {
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        return config.parameterCount - (config.numHiddenLayers - kept) * config.parametersPerLayer
    }

    /// Estimated peak bytes of quantizing `config` cut to `layers` layers with `method`.
    public static func peakBytes(_ config: LlamaConfig, layers: Int? = nil, method: QuantizationMethod) -> Int {
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        let outside = parameters(config, layers: 0), perLayer = Double(config.parametersPerLayer)
        return 4 * outside + 8 * config.parametersPerLayer + Int(quantizedBytesPerParameter(method) * perLayer * Double(kept))
    }

    /// The most decoder layers whose quantization fits in `availableBytes` (0 when not even one does).
    public static func layersThatFit(_ config: LlamaConfig, availableBytes: Int, method: QuantizationMethod) -> Int {
        mostLayers(of: config, fitting: availableBytes) { peakBytes(config, layers: $0, method: method) }
    }

    /// The most of `config`'s decoder layers, kept from the first, whose estimate `bytes(layers)` (growing
    /// with the layers) fits in `availableBytes`; 0 when not even one does. Shared with `EngineMemory`.
    static func mostLayers(of config: LlamaConfig, fitting availableBytes: Int, _ bytes: (Int) -> Int) -> Int {
        var fit = 0
        while fit < config.numHiddenLayers, bytes(fit + 1) <= availableBytes { fit += 1 }
        return fit
    }

    /// Bytes as decimal gigabytes with one decimal, as the memory checks print them.
    static func gigabytes(_ bytes: Int) -> String { String(format: "%.1f GB", Double(bytes) / 1e9) }

    /// Throws, saying what would fit, when the estimate for `model` exceeds `availableBytes` (nil: unknown,
    /// nothing is checked).
    public static func check(_ config: LlamaConfig, layers: Int?, method: QuantizationMethod, availableBytes: Int?, model: String) throws {
        guard let availableBytes else { return }
        let needed = peakBytes(config, layers: layers, method: method)
        guard needed > availableBytes else { return }
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        let fit = layersThatFit(config, availableBytes: availableBytes, method: method)
        let gb = gigabytes
        let advice = fit > 0
            ? "pass --layers \(fit) or fewer (the first layers of the model), or run on a machine with more memory"
            : "not even one layer fits: run on a machine with more memory"
        throw ModelError.invalidInput(
            "quantizing \(model) to \(method.rawValue) (\(kept) layers) needs about \(gb(needed)) of memory at its peak (the FP32 "
                + "embedding and lm_head, one FP32 layer and its reordered copy, and the layers quantized so far), and this machine "
                + "has \(gb(availableBytes)) available: \(advice); --skip-memory-check runs it anyway")
    }
}
