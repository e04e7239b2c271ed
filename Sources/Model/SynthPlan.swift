/// Options of a synthesized model (see `ModelSynth`).
public struct SynthOptions: Sendable, Equatable {
    /// Storage type of the weights: F32, F16 or BF16.
    public var dtype: SafetensorsDType = .f16
    public var seed: UInt64 = 0
    /// Number of outlier channels of the hidden state; nil: hidden / 64 (about 1.6%, at least 1).
    public var outlierChannels: Int?
    /// RMSNorm gains of outlier channels (input and post-attention norms), uniform in this range;
    /// ordinary channels get gains in 0.8...1.2.
    public var outlierGain: ClosedRange<Float> = 1...4
    /// Magnitude of the outlier channels in the embedding (and so in the residual stream), in units of
    /// the ordinary channels' standard deviation (1); each channel gets 0.75 to 1.25 times this, with a
    /// random sign.
    public var residualOutlierScale: Float = 20
    /// Row scale of the few outlier rows of v_proj and up_proj (1/64 of their outputs, at least 1),
    /// which become outlier channels of the o_proj and down_proj inputs.
    public var projectionOutlierScale: ClosedRange<Float> = 10...30

    public init(dtype: SafetensorsDType = .f16, seed: UInt64 = 0, outlierChannels: Int? = nil) {
        self.dtype = dtype
        self.seed = seed
        self.outlierChannels = outlierChannels
    }
}

/// The structure of a synthesized model: which channels are outliers and how large. Everything random
/// is drawn from `SynthRandom` streams named after what they decide, under the options' seed.
///
/// Outliers are made the way real checkpoints show them, without blowing activations up:
/// - hidden-state channels `outlierChannels` are large in the embedding (so in the residual stream,
///   "massive activations") and get RMSNorm gains of `outlierGain` in every layer, so the inputs of
///   q/k/v and gate/up carry them; the columns of those weights on these channels are divided by the
///   channel's size there (gain times massive value), so that each contributes to the layer outputs
///   like an ordinary channel and activations stay at the ordinary channels' scale;
/// - a few rows of v_proj and up_proj are scaled up, making outlier channels in the inputs of o_proj
///   and down_proj; the matching columns of o_proj and down_proj are scaled down by the same factor,
///   and the matching gate_proj rows get a positive bias through the massive channels, so silu(gate)
///   does not hide the up_proj outliers.
///
/// With the defaults, the largest outlier channel is about 15-20x the median channel in the residual
/// stream, 45-65x in the q/k/v and gate/up inputs, 25-40x in the o_proj input and a few hundred times
/// in the down_proj input (`lowbit model run` prints these ratios per layer): the 20-100x range the
/// issue and KERNELS.md describe for activations, with down_proj's heavier tail as in real checkpoints.
public struct SynthPlan: Sendable, Equatable {
    public let config: LlamaConfig
    public let options: SynthOptions
    /// Outlier channels of the hidden state, ascending.
    public let outlierChannels: [Int]
    /// Signed embedding value of each outlier channel (same order).
    public let residualOutliers: [Float]
    /// Per layer: RMSNorm gains (input, post-attention) of each outlier channel.
    public let inputGains: [[Float]]
    public let postAttentionGains: [[Float]]
    /// Per layer: (row, scale) of the scaled rows of v_proj and up_proj.
    public let valueRows: [[ScaledRow]]
    public let upRows: [[ScaledRow]]

    /// A weight row multiplied by `scale` (and the matching column of the next projection divided by it).
    public struct ScaledRow: Sendable, Equatable {
        public let row: Int
        public let scale: Float
    }

    public init(config: LlamaConfig, options: SynthOptions) throws {
        try config.validate()
        let h = config.hiddenSize
        let count = options.outlierChannels ?? max(1, h / 64)
        guard (0...h).contains(count) else {
            throw ModelError.invalidInput("outlier channels must be in 0...\(h), got \(count)")
        }
        guard options.dtype.isFloatingPoint else {
            throw ModelError.invalidInput("synthesized weights are stored as F32, F16 or BF16, not \(options.dtype.rawValue)")
        }
        self.config = config
        self.options = options
        var rng = SynthRandom(seed: options.seed, stream: "outlier-channels")
        outlierChannels = Self.choose(count, of: h, &rng)
        residualOutliers = outlierChannels.map { _ in
            (rng.next() & 1 == 0 ? 1 : -1) * options.residualOutlierScale * rng.uniform(in: 0.75...1.25)
        }
        var gains: [[Float]] = [], post: [[Float]] = [], v: [[ScaledRow]] = [], up: [[ScaledRow]] = []
        for l in 0..<config.numHiddenLayers {
            var r = SynthRandom(seed: options.seed, stream: "layers.\(l).outliers")
            gains.append(outlierChannels.map { _ in r.uniform(in: options.outlierGain) })
            post.append(outlierChannels.map { _ in r.uniform(in: options.outlierGain) })
            let vCount = max(1, config.keyValueWidth / 64), upCount = max(1, config.intermediateSize / 64)
            v.append(Self.choose(vCount, of: config.keyValueWidth, &r).map { ScaledRow(row: $0, scale: r.uniform(in: options.projectionOutlierScale)) })
            up.append(Self.choose(upCount, of: config.intermediateSize, &r).map { ScaledRow(row: $0, scale: r.uniform(in: options.projectionOutlierScale)) })
        }
        inputGains = gains
        postAttentionGains = post
        valueRows = v
        upRows = up
    }

    /// `count` distinct indices of 0..<n, ascending (a partial Fisher-Yates shuffle).
    static func choose(_ count: Int, of n: Int, _ rng: inout SynthRandom) -> [Int] {
        var pool = Array(0..<n)
        for i in 0..<count {
            let j = i + Int(rng.next() % UInt64(n - i))
            pool.swapAt(i, j)
        }
        return pool[0..<count].sorted()
    }
}
