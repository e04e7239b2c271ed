import Foundation

/// A safetensors file, opened and validated (see `SafetensorsHeader` for the checks). The file is
/// memory-mapped where the platform allows it; tensors are decoded only when asked for.
///
/// ```swift
/// let file = try SafetensorsFile(contentsOf: url)
/// let w = try file.floats("model.norm.weight", shape: [4096])   // F32, F16 or BF16 -> [Float]
/// let codes = try file.int8s("model.layers.0.mlp.down_proj.qweight")
/// ```
public struct SafetensorsFile: Sendable {
    /// Where the file came from (a path, or a name given to in-memory data), used in error messages.
    public let location: String
    /// The header's `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// Every tensor's entry by name.
    public let tensors: [String: SafetensorsTensorInfo]

    private let storage: Data
    private let dataStart: Int

    /// Opens and validates the file at `url`, memory-mapping it.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw ModelError.unreadableFile(file: url.path, detail: error.localizedDescription)
        }
        try self.init(data: data, location: url.path)
    }

    /// Validates a whole safetensors file held in memory.
    public init(data: Data, location: String = "<memory>") throws {
        let header = try data.withUnsafeBytes { try SafetensorsHeader.parse($0, file: location) }
        self.location = location
        self.metadata = header.metadata
        self.tensors = header.tensors
        self.storage = data
        self.dataStart = header.dataStart
    }

    /// Tensor names, sorted.
    public var names: [String] { tensors.keys.sorted() }

    /// Size of the data section in bytes.
    public var dataByteCount: Int { storage.count - dataStart }

    /// The entry of `name`, or `ModelError.missingTensor`.
    public func info(_ name: String) throws -> SafetensorsTensorInfo {
        guard let info = tensors[name] else { throw ModelError.missingTensor(tensor: name, location: location) }
        return info
    }

    /// The entry of `name`, checked to have `shape`.
    public func info(_ name: String, shape: [Int]) throws -> SafetensorsTensorInfo {
        let info = try info(name)
        guard info.shape == shape else { throw ModelError.wrongShape(tensor: name, expected: shape, found: info.shape) }
        return info
    }

    /// Calls `body` with the tensor's bytes in the file (little-endian, not necessarily aligned).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let range = try info(name).dataOffsets
        return try storage.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[(dataStart + range.lowerBound)..<(dataStart + range.upperBound)]))
        }
    }

    /// The tensor's bytes, copied.
    public func rawBytes(_ name: String) throws -> [UInt8] {
        try withRawBytes(name) { [UInt8]($0) }
    }

    /// The values of a floating-point tensor (F32, F16 or BF16) as Floats, row-major.
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        guard info.dtype.isFloatingPoint else {
            throw ModelError.wrongDType(tensor: name, expected: "F32, F16 or BF16", found: info.dtype.rawValue)
        }
        let count = info.elementCount
        return try withRawBytes(name) { raw in
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                ElementCodec.decode(raw, info.dtype, into: buffer)
                initialized = count
            }
        }
    }

    /// The values of a floating-point tensor, checked to have `shape`.
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        _ = try info(name, shape: shape)
        return try floats(name)
    }

    /// The values of an I8 tensor.
    public func int8s(_ name: String) throws -> [Int8] { try integers(name, .i8, Int8.self) }
    /// The values of a U8 tensor.
    public func uint8s(_ name: String) throws -> [UInt8] { try integers(name, .u8, UInt8.self) }
    /// The values of an I32 tensor.
    public func int32s(_ name: String) throws -> [Int32] { try integers(name, .i32, Int32.self) }
    /// The values of an I64 tensor.
    public func int64s(_ name: String) throws -> [Int64] { try integers(name, .i64, Int64.self) }

    private func integers<T: FixedWidthInteger>(_ name: String, _ dtype: SafetensorsDType, _ type: T.Type) throws -> [T] {
        let info = try info(name)
        guard info.dtype == dtype else {
            throw ModelError.wrongDType(tensor: name, expected: dtype.rawValue, found: info.dtype.rawValue)
        }
        return try withRawBytes(name) { ElementCodec.integers($0, count: info.elementCount, as: type) }
    }
}
