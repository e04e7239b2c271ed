import Model

/// The weights an engine command holds after loading an FP model (`lowbit generate`, `lowbit serve-bench`
/// on an FP model directory), checked before anything is read: every weight as FP32, 4 bytes per
/// parameter (the FP32 mode runs on them, and w8a8 / w4a4 are quantized from them), plus, for each mode
/// quantized at load, its codes (`QuantizationMemory.quantizedBytesPerParameter` per layer parameter) and
/// its FP16 lm_head, each twice: as loaded, and packed for the kernels by the first step (further
/// packed layouts, up to `EngineOptions.packedLayouts` per layer, are not counted). Activations and KV
/// caches come on top (serve-bench checks its caches per batch), so this is a floor: for 8 layers of the
/// llama-7b preset in all three modes it gives 13.5 GB, where the process held 10.5 GB once the three
/// engines were prepared and 13.5 GB once their first steps had packed the weights. A model past the
/// machine's memory is refused with what would fit, rather than read until the kernel's out-of-memory
/// killer ends the process.
public enum EngineMemory {
    /// Bytes held after loading `config` cut to its first `layers` decoder layers (all when nil),
    /// preparing an engine for each of `modes` and running its first step.
    public static func loadBytes(_ config: LlamaConfig, layers: Int? = nil, modes: [EngineMode]) -> Int {
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        let layerParameters = Double(kept * config.parametersPerLayer)
        let quantized = Set(modes).subtracting([.fp32]).map { mode -> Int in
            let method: QuantizationMethod = mode == .w8a8 ? .w8a8 : .w4a4
            let loaded = Int(QuantizationMemory.quantizedBytesPerParameter(method) * layerParameters) + 2 * config.vocabSize * config.hiddenSize
            return 2 * loaded
        }
        return 4 * QuantizationMemory.parameters(config, layers: layers) + quantized.reduce(0, +)
    }

    /// The most decoder layers that fit in `availableBytes` with `modes` (0 when not even one does).
    public static func layersThatFit(_ config: LlamaConfig, modes: [EngineMode], availableBytes: Int) -> Int {
        QuantizationMemory.mostLayers(of: config, fitting: availableBytes) { loadBytes(config, layers: $0, modes: modes) }
    }

    /// Throws, saying what would fit, when `loadBytes` of `model` exceeds `availableBytes` (nil: unknown,
    /// nothing is checked).
    public static func check(_ config: LlamaConfig, layers: Int?, modes: [EngineMode], availableBytes: Int?, model: String) throws {
        guard let availableBytes else { return }
        let needed = loadBytes(config, layers: layers, modes: modes)
        guard needed > availableBytes else { return }
        let kept = min(layers ?? config.numHiddenLayers, config.numHiddenLayers)
        let fit = layersThatFit(config, modes: modes, availableBytes: availableBytes)
        let gb = QuantizationMemory.gigabytes
        let cut = fit > 0 ? "pass --layers \(fit) or fewer (the first layers of the model), or " : ""
        let names = modes.map(\.rawValue).joined(separator: ", ")
        throw ModelError.invalidInput(
            "\(model) (\(kept) layers) needs at least \(gb(needed)) for its weights in \(names) (FP32 weights, which every mode "
                + "quantizes from at load, and the quantized ones), and this machine has \(gb(availableBytes)) available: "
                + "\(cut)quantize it a layer at a time with `lowbit quantize --model \(model) --out QDIR` and pass QDIR (a quantized "
                + "model loads without the FP32 weights); --skip-memory-check loads it anyway")
    }
}
