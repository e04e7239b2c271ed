import Foundation

/// Random-weight Llama models with realistic outlier channels (see `SynthPlan`), written as a Hugging
/// Face model directory or built in memory. The same config, options and seed always give the same
/// bytes; each tensor has its own random stream, so a model with more layers starts with the same
/// layers as one with fewer.
///
/// Distributions: linear weights are approximately N(0, 1/in) (standard deviation 1/sqrt(in)), so each
/// projection keeps its input's scale and activations stay finite through any number of layers;
/// the embedding is N(0, 1) plus the outlier channels (`SynthPlan` says how outliers are made, and
/// how the weights around them keep activations in range); norm gains are uniform in 0.8...1.2 except on
/// outlier channels (`outlierGain` in the layers' norms); the final norm's are 2...3, and 1 / the
/// massive value on outlier channels.
public enum ModelSynth {
    /// Writes `config.json` and `model.safetensors` into `directory` (created if needed), streaming one
    /// tensor at a time. Returns the plan (outlier channels and scales).
    @discardableResult
    public static func write(config: LlamaConfig, options: SynthOptions = SynthOptions(), to directory: URL) throws -> SynthPlan {
        let plan = try SynthPlan(config: config, options: options)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelError.invalidModelDirectory("cannot create \(directory.path): \(error.localizedDescription)")
        }
        var stored = config
        stored.torchDtype = options.dtype.torchName
        let configURL = directory.appendingPathComponent("config.json")
        do {
            try stored.encoded().write(to: configURL, options: .atomic)
        } catch {
            throw ModelError.writeFailed("\(configURL.path): cannot write config.json (\(error.localizedDescription))")
        }
        let recipes = Dictionary(uniqueKeysWithValues: recipes(plan).map { ($0.name, $0) })
        let specs = recipes.values.map { SafetensorsTensorSpec(name: $0.name, dtype: options.dtype, shape: $0.shape) }
        try SafetensorsWriter.write(specs: specs, metadata: metadata(plan), to: directory.appendingPathComponent("model.safetensors")) { spec, sink in
            guard let recipe = recipes[spec.name] else { return }
            try recipe.generate(seed: options.seed) { try sink.append(floats: $0) }
        }
        return plan
    }

    /// The same weights in memory, as FP32 rounded through the storage dtype: equal to what loading
    /// the written directory gives.
    public static func weights(config: LlamaConfig, options: SynthOptions = SynthOptions()) throws -> LlamaWeights {
        let plan = try SynthPlan(config: config, options: options)
        var config = config
        config.torchDtype = options.dtype.torchName
        var values: [String: [Float]] = [:]
        for recipe in recipes(plan) {
            var v: [Float] = []
            v.reserveCapacity(recipe.rows * recipe.cols)
            try recipe.generate(seed: options.seed) { chunk in
                switch options.dtype {
                case .f16: v += chunk.map(HalfFloat.roundedToFP16)
                case .bf16: v += chunk.map(HalfFloat.roundedToBF16)
                default: v += chunk
                }
            }
            values[recipe.name] = v
        }
        func matrix(_ name: String, _ shape: [Int]) -> Matrix {
            Matrix(rows: shape[0], cols: shape[1], values: values[name] ?? [])
        }
        let layers = (0..<config.numHiddenLayers).map { i in
            let n = { (t: LlamaTensorName.Layer) in LlamaTensorName.layer(i, t) }
            return LlamaLayerWeights(
                inputNorm: values[n(.inputNorm)] ?? [], q: matrix(n(.q), LlamaTensorName.Layer.q.shape(config)),
                k: matrix(n(.k), LlamaTensorName.Layer.k.shape(config)), v: matrix(n(.v), LlamaTensorName.Layer.v.shape(config)),
                o: matrix(n(.o), LlamaTensorName.Layer.o.shape(config)), postAttentionNorm: values[n(.postAttentionNorm)] ?? [],
                gate: matrix(n(.gate), LlamaTensorName.Layer.gate.shape(config)), up: matrix(n(.up), LlamaTensorName.Layer.up.shape(config)),
                down: matrix(n(.down), LlamaTensorName.Layer.down.shape(config)))
        }
        let embedding = matrix(LlamaTensorName.embedding, [config.vocabSize, config.hiddenSize])
        let weights = LlamaWeights(
            config: config, embedding: embedding, layers: layers, finalNorm: values[LlamaTensorName.finalNorm] ?? [],
            lmHead: config.tieWordEmbeddings ? embedding : matrix(LlamaTensorName.lmHead, [config.vocabSize, config.hiddenSize]))
        try weights.validate()
        return weights
    }

    /// The safetensors metadata of a synthesized model: `format` "pt" (as Hugging Face writes it), and
    /// `lowbit.synthetic`, `lowbit.seed`, `lowbit.outlier_channels` (comma-separated).
    public static func metadata(_ plan: SynthPlan) -> [String: String] {
        [
            "format": "pt",
            "lowbit.synthetic": "true",
            "lowbit.seed": String(plan.options.seed),
            "lowbit.outlier_channels": plan.outlierChannels.map(String.init).joined(separator: ","),
        ]
    }

    /// How to make every tensor of the plan's model.
    static func recipes(_ plan: SynthPlan) -> [SynthRecipe] {
        let c = plan.config, h = c.hiddenSize
        let outliers = plan.outlierChannels
        /// 1 everywhere except `1 / scale` at the given indices.
        func inverse(_ n: Int, _ pairs: [(Int, Float)]) -> [Float] {
            var s = [Float](repeating: 1, count: n)
            for (i, scale) in pairs { s[i] = 1 / scale }
            return s
        }
        func rows(_ n: Int, _ scaled: [SynthPlan.ScaledRow]) -> [Float] {
            var s = [Float](repeating: 1, count: n)
            for r in scaled { s[r.row] = r.scale }
            return s
        }
        func gains(_ name: String, _ outlierGains: [Float], ordinary: ClosedRange<Float> = 0.8...1.2) -> SynthRecipe {
            var rng = SynthRandom(seed: plan.options.seed, stream: name)
            var g = (0..<h).map { _ in rng.uniform(in: ordinary) }
            for (k, channel) in outliers.enumerated() where k < outlierGains.count { g[channel] = outlierGains[k] }
            return SynthRecipe(name: name, rows: 1, cols: h, kind: .vector(g), vector: true)
        }
        var out: [SynthRecipe] = [
            SynthRecipe(name: LlamaTensorName.embedding, rows: c.vocabSize, cols: h,
                        kind: .embedding(Dictionary(uniqueKeysWithValues: zip(outliers, plan.residualOutliers)))),
            // The final norm scales the massive channels back to the ordinary channels' size, and the
            // ordinary ones up (they are small next to the massive ones), for logits of about unit scale.
            gains(LlamaTensorName.finalNorm, plan.residualOutliers.map { 1 / abs($0) }, ordinary: 2...3),
        ]
        if !c.tieWordEmbeddings {
            out.append(SynthRecipe(name: LlamaTensorName.lmHead, rows: c.vocabSize, cols: h, kind: .gaussian(std: 1 / Float(h).squareRoot())))
        }
        for l in 0..<c.numHiddenLayers {
            let name = { (t: LlamaTensorName.Layer) in LlamaTensorName.layer(l, t) }
            // Columns on outlier channels are divided by the channel's size after the norm (gain times
            // massive value), so each contributes to the output like an ordinary channel.
            let massive = plan.residualOutliers.map { abs($0) }
            let inCols = inverse(h, Array(zip(outliers, zip(plan.inputGains[l], massive).map(*))))
            let postCols = inverse(h, Array(zip(outliers, zip(plan.postAttentionGains[l], massive).map(*))))
            // v_proj row kvHead * d + i feeds o_proj column head * d + i of every query head in the group.
            let oCols = inverse(c.queryWidth, plan.valueRows[l].flatMap { r in
                (0..<c.groupSize).map { g in ((r.row / c.headDim * c.groupSize + g) * c.headDim + r.row % c.headDim, r.scale) }
            })
            let downCols = inverse(c.intermediateSize, plan.upRows[l].map { ($0.row, $0.scale) })
            func linear(_ t: LlamaTensorName.Layer, rowScale: [Float]? = nil, colScale: [Float]) -> SynthRecipe {
                let shape = t.shape(c)
                return SynthRecipe(name: name(t), rows: shape[0], cols: shape[1], kind: .gaussian(std: 1 / Float(shape[1]).squareRoot()),
                                   rowScale: rowScale, colScale: colScale)
            }
            out += [
                gains(name(.inputNorm), plan.inputGains[l]),
                linear(.q, colScale: inCols), linear(.k, colScale: inCols),
                linear(.v, rowScale: rows(c.keyValueWidth, plan.valueRows[l]), colScale: inCols),
                linear(.o, colScale: oCols),
                gains(name(.postAttentionNorm), plan.postAttentionGains[l]),
                gateWithBias(linear(.gate, colScale: postCols), plan, l),
                linear(.up, rowScale: rows(c.intermediateSize, plan.upRows[l]), colScale: postCols),
                linear(.down, colScale: downCols),
            ]
        }
        return out
    }

    /// Gives the gate rows of the scaled up_proj rows a positive bias, carried by the massive channels
    /// (which are nearly constant over tokens, so they act as biases, as in real checkpoints): the gate
    /// is then about +2 (silu about 1.8) for most tokens, and the scaled rows are outliers of
    /// down_proj's input for every token, not only for those whose gate happens to be positive.
    static func gateWithBias(_ recipe: SynthRecipe, _ plan: SynthPlan, _ layer: Int) -> SynthRecipe {
        guard !plan.outlierChannels.isEmpty else { return recipe }
        let h = Float(plan.config.hiddenSize)
        // RMS of the residual: unit ordinary channels plus the massive ones.
        let rms = (1 + plan.residualOutliers.map { $0 * $0 }.reduce(0, +) / h).squareRoot()
        // Before the column scale 1 / (gain * |massive|), a weight w on channel c adds about
        // w * sign(massive_c) / rms to the gate: these weights add up to +2.
        let weight = 2 * rms / Float(plan.outlierChannels.count)
        let row = zip(plan.outlierChannels, plan.residualOutliers).map { (col: $0, value: $1 > 0 ? weight : -weight) }
        var recipe = recipe
        for scaled in plan.upRows[layer] { recipe.overrides[scaled.row] = row }
        return recipe
    }
}
