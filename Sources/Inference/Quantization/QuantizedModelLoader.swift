import Foundation
import Kernels
import Model

extension QuantizedModel {
    /// Reads a directory written by `save(to:)` (or `lowbit quantize`), checking everything: the
    /// format and version in the metadata, every setting, every tensor's presence, dtype and shape
    /// against config.json and the outlier rule, that each permutation is one, that scales are finite,
    /// and that no tensor is left over. Errors are `ModelError`s naming the file and tensor.
    public static func load(from directory: URL) throws -> QuantizedModel {
        let config = try LlamaConfig.load(from: directory)
        let url = directory.appendingPathComponent(QuantizedModelFile.weightsFile)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ModelError.invalidModelDirectory("\(directory.path) has no \(QuantizedModelFile.weightsFile); a quantized model directory holds config.json and \(QuantizedModelFile.weightsFile) written by `lowbit quantize`")
        }
        let file = try SafetensorsFile(contentsOf: url)
        let settings = try QuantizedModelReader.settings(file)
        var reader = QuantizedModelReader(file: file, config: config, settings: settings)
        return try reader.model()
    }
}

/// Reads and checks the tensors of one quantized model file.
struct QuantizedModelReader {
    let file: SafetensorsFile
    let config: LlamaConfig
    let settings: QuantizationSettings
    /// Names read so far, to find tensors left over.
    private var read = Set<String>()

    init(file: SafetensorsFile, config: LlamaConfig, settings: QuantizationSettings) {
        self.file = file
        self.config = config
        self.settings = settings
    }

    /// The settings in the metadata, or an error saying what the file is instead.
    static func settings(_ file: SafetensorsFile) throws -> QuantizationSettings {
        let m = file.metadata, where_ = file.location
        guard let format = m["format"], format == QuantizedModelFile.format else {
            if file.tensors[LlamaTensorName.layer(0, .q)] != nil {
                throw ModelError.invalidModelDirectory("\(where_) is a floating-point model (format \(m["format"] ?? "not given")), not a quantized one; run `lowbit quantize --model DIR --out DIR --method w4a4` first")
            }
            throw ModelError.invalidModelDirectory("\(where_): format \(m["format"] ?? "not given") is not \(QuantizedModelFile.format); this file was not written by `lowbit quantize`")
        }
        guard m["version"] == QuantizedModelFile.version else {
            throw ModelError.invalidModelDirectory("\(where_): \(QuantizedModelFile.format) version \(m["version"] ?? "not given"); this lowbit reads version \(QuantizedModelFile.version); quantize the model again with this lowbit")
        }
        func value(_ key: String) throws -> String {
            guard let v = m[key] else { throw ModelError.invalidModelDirectory("\(where_): metadata key \(key) is missing") }
            return v
        }
        func number<T: LosslessStringConvertible>(_ key: String, _ type: T.Type) throws -> T {
            let text = try value(key)
            guard let v = T(text) else { throw ModelError.invalidModelDirectory("\(where_): metadata \(key) = \(text) is not a \(T.self)") }
            return v
        }
        let methodName = try value("method")
        guard let method = QuantizationMethod(rawValue: methodName) else {
            throw ModelError.invalidModelDirectory("\(where_): method \(methodName) is not one of \(QuantizationMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let calibration = CalibrationSettings(
            tokens: try number("calibration_tokens", Int.self), sequenceLength: try number("calibration_sequence_length", Int.self),
            seed: try number("calibration_seed", UInt64.self))
        var s = QuantizationSettings(method: method, outliers: try number("outliers", Int.self), calibration: calibration)
        let stored = (group: try number("group_size", Int.self), a: try number("activation_clip", Float.self), w: try number("weight_clip", Float.self))
        guard stored.group == s.groupSize else {
            throw ModelError.invalidModelDirectory("\(where_): group_size \(stored.group); \(method.rawValue) uses \(s.groupSize)")
        }
        for (name, clip) in [("activation_clip", stored.a), ("weight_clip", stored.w)] where !(clip > 0 && clip <= 1) {
            throw ModelError.invalidModelDirectory("\(where_): \(name) \(clip) must be in (0, 1]")
        }
        s.activationClip = stored.a
        s.weightClip = stored.w
        return s
    }

    /// The whole model.
    mutating func model() throws -> QuantizedModel {
        let c = config, h = c.hiddenSize
        let embedding = try matrix(LlamaTensorName.embedding, c.vocabSize, h)
        var layers: [QuantizedLayer] = []
        for i in 0..<c.numHiddenLayers { layers.append(try layer(i)) }
        let finalNorm = try floats(LlamaTensorName.finalNorm, [h])
        let lmHead = c.tieWordEmbeddings ? embedding : try matrix(LlamaTensorName.lmHead, c.vocabSize, h)
        if let extra = Set(file.tensors.keys).subtracting(read).sorted().first {
            throw ModelError.invalidModelDirectory("\(file.location): unexpected tensor \(extra) for a \(c.numHiddenLayers)-layer \(settings.method.rawValue) model; the file does not match config.json")
        }
        return QuantizedModel(config: c, settings: settings, embedding: embedding, layers: layers, finalNorm: finalNorm, lmHead: lmHead)
    }

    private mutating func layer(_ i: Int) throws -> QuantizedLayer {
        let c = config
        func perm(_ kind: String, _ width: Int) throws -> [Int32] {
            let name = QuantizedModelFile.permutation(i, kind)
            let p = try int32s(name, [width])
            guard Permutation.isValid(p) else {
                throw ModelError.invalidModelDirectory("\(file.location): \(name) is not a permutation of 0..<\(width); the file is corrupt")
            }
            return p
        }
        let p = LayerPermutations(qkv: try perm("qkv", c.hiddenSize), o: try perm("o", c.queryWidth),
                                  gateUp: try perm("gate_up", c.hiddenSize), down: try perm("down", c.intermediateSize))
        if settings.method == .w8a8, !p.isIdentity {
            throw ModelError.invalidModelDirectory("\(file.location): layer \(i) of a w8a8 model has a non-identity permutation; w8a8 does not reorder")
        }
        func w(_ t: LlamaTensorName.Layer) throws -> QuantizedWeight { try weight(i, t) }
        return QuantizedLayer(
            permutations: p, inputNorm: try floats(QuantizedModelFile.norm(i, .inputNorm), [c.hiddenSize]),
            postAttentionNorm: try floats(QuantizedModelFile.norm(i, .postAttentionNorm), [c.hiddenSize]),
            q: try w(.q), k: try w(.k), v: try w(.v), o: try w(.o), gate: try w(.gate), up: try w(.up), down: try w(.down))
    }

    private mutating func weight(_ i: Int, _ t: LlamaTensorName.Layer) throws -> QuantizedWeight {
        let shape = t.shape(config), n = shape[0], k = shape[1]
        let name = { (part: String) in QuantizedModelFile.linear(i, t, part) }
        switch settings.method {
        case .w4a4:
            let o = try settings.outliers(width: k), normal = k - o
            var q = AtomQuantization.Quantized(rows: n, k: k, outliers: o)
            q.codes = try uint8s(name("codes"), [n, normal / 2])
            q.scales = try scales(name("scales"), [n, normal / AtomQuantization.groupSize])
            q.outlierCodes = try int8s(name("outlier_codes"), [n, o])
            q.outlierScales = try scales(name("outlier_scales"), [n])
            q.groupSums = Self.groupSums(q.codes, groups: n * q.groups)
            return .atom(q)
        case .w8a8:
            let codes = try int8s(name("codes"), [n, k])
            return .int8(Int8Weight(rows: n, cols: k, codes: codes, scales: try scales(name("scales"), [n])))
        }
    }

    /// Sums of the signed INT4 codes of each run of 128 codes (64 packed bytes); not stored, since
    /// they follow from the codes.
    static func groupSums(_ codes: [UInt8], groups: Int) -> [Int32] {
        let bytes = AtomQuantization.groupSize / 2
        return (0..<groups).map { g in
            var sum: Int32 = 0
            for b in codes[(g * bytes)..<((g + 1) * bytes)] {
                sum += Int32(Int8(bitPattern: b << 4) >> 4) + Int32(Int8(bitPattern: b) >> 4)
            }
            return sum
        }
    }

    // MARK: typed, shape-checked reads

    private mutating func check(_ name: String, _ shape: [Int], _ dtype: SafetensorsDType) throws {
        let info = try file.info(name)
        guard info.dtype == dtype else { throw ModelError.wrongDType(tensor: name, expected: dtype.rawValue, found: info.dtype.rawValue) }
        guard info.shape == shape else { throw ModelError.wrongShape(tensor: name, expected: shape, found: info.shape) }
        read.insert(name)
    }

    private mutating func floats(_ name: String, _ shape: [Int]) throws -> [Float] {
        try check(name, shape, .f32)
        return try file.floats(name)
    }

    private mutating func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
        Matrix(rows: rows, cols: cols, values: try floats(name, [rows, cols]))
    }

    /// Scales: F32, finite and not negative.
    private mutating func scales(_ name: String, _ shape: [Int]) throws -> [Float] {
        let v = try floats(name, shape)
        if let bad = v.firstIndex(where: { !($0 >= 0 && $0.isFinite) }) {
            throw ModelError.invalidModelDirectory("\(file.location): \(name)[\(bad)] = \(v[bad]) is not a finite, non-negative scale; the file is corrupt")
        }
        return v
    }

    private mutating func int8s(_ name: String, _ shape: [Int]) throws -> [Int8] {
        try check(name, shape, .i8)
        return try file.int8s(name)
    }

    private mutating func uint8s(_ name: String, _ shape: [Int]) throws -> [UInt8] {
        try check(name, shape, .u8)
        return try file.uint8s(name)
    }

    private mutating func int32s(_ name: String, _ shape: [Int]) throws -> [Int32] {
        try check(name, shape, .i32)
        return try file.int32s(name)
    }
}
