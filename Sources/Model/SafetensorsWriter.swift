import Foundation

/// A tensor held in memory, ready to write: its dtype, shape and little-endian bytes.
public struct SafetensorsTensor: Sendable, Equatable {
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let bytes: [UInt8]

    /// Raw bytes; their count must be the element count times the dtype's size.
    public init(dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) throws {
        let needed = shape.reduce(dtype.byteSize, *)
        guard shape.allSatisfy({ $0 >= 0 }), needed == bytes.count else {
            throw ModelError.writeFailed("a \(dtype.rawValue) tensor of shape \(shape) needs \(needed) bytes, got \(bytes.count)")
        }
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// Floats stored as F32, F16 or BF16 (rounded to nearest even).
    public init(floats: [Float], shape: [Int], dtype: SafetensorsDType = .f32) throws {
        guard dtype.isFloatingPoint else { throw ModelError.writeFailed("floats cannot be stored as \(dtype.rawValue)") }
        try self.init(dtype: dtype, shape: shape, bytes: ElementCodec.bytes(of: floats, as: dtype))
    }

    public init(int8s: [Int8], shape: [Int]) throws { try self.init(dtype: .i8, shape: shape, bytes: ElementCodec.bytes(of: int8s)) }
    public init(uint8s: [UInt8], shape: [Int]) throws { try self.init(dtype: .u8, shape: shape, bytes: uint8s) }
    public init(int32s: [Int32], shape: [Int]) throws { try self.init(dtype: .i32, shape: shape, bytes: ElementCodec.bytes(of: int32s)) }
    public init(int64s: [Int64], shape: [Int]) throws { try self.init(dtype: .i64, shape: shape, bytes: ElementCodec.bytes(of: int64s)) }
}

/// A tensor declared before its data is produced, for streaming writes.
public struct SafetensorsTensorSpec: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]

    public init(name: String, dtype: SafetensorsDType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.byteSize }
}

/// Writes safetensors files: tensors in name order (so the same tensors always give the same bytes),
/// `__metadata__` first, the header padded with spaces to a multiple of 8 bytes so the data section
/// is 8-byte aligned. Files are written to a temporary name and renamed into place when complete.
public enum SafetensorsWriter {
    /// The whole file for in-memory tensors.
    public static func data(_ tensors: [String: SafetensorsTensor], metadata: [String: String] = [:]) throws -> Data {
        let specs = tensors.map { SafetensorsTensorSpec(name: $0.key, dtype: $0.value.dtype, shape: $0.value.shape) }
        var out = header(specs: specs, metadata: metadata)
        for name in tensors.keys.sorted() { out.append(contentsOf: tensors[name]?.bytes ?? []) }
        return out
    }

    /// Writes in-memory tensors to `url`.
    public static func write(_ tensors: [String: SafetensorsTensor], metadata: [String: String] = [:], to url: URL) throws {
        let specs = tensors.map { SafetensorsTensorSpec(name: $0.key, dtype: $0.value.dtype, shape: $0.value.shape) }
        try write(specs: specs, metadata: metadata, to: url) { spec, sink in
            guard let t = tensors[spec.name] else { return }
            try t.bytes.withUnsafeBytes { try sink.append(bytes: $0) }
        }
    }

    /// Streams tensors to `url`: the header is written from `specs`, then `produce` is called once per
    /// tensor, in name order, and must append exactly that tensor's bytes (or floats) to the sink.
    public static func write(specs: [SafetensorsTensorSpec], metadata: [String: String] = [:], to url: URL,
                             produce: (SafetensorsTensorSpec, inout SafetensorsSink) throws -> Void) throws {
        var seen = Set<String>()
        for s in specs {
            guard seen.insert(s.name).inserted else { throw ModelError.duplicateTensor(tensor: s.name, locations: [url.path]) }
            guard s.shape.allSatisfy({ $0 >= 0 }) else { throw ModelError.writeFailed("tensor \(s.name) has a negative dimension in \(s.shape)") }
        }
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw ModelError.writeFailed("\(temporary.path): cannot create the file; check that the directory exists and is writable")
        }
        do {
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }
            var sink = SafetensorsSink(handle: handle)
            try sink.append(data: header(specs: specs, metadata: metadata))
            for spec in specs.sorted(by: { $0.name < $1.name }) {
                sink.begin(spec)
                try produce(spec, &sink)
                try sink.end()
            }
            try sink.flush()
            try handle.synchronize()
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: temporary, to: url)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            if let e = error as? ModelError { throw e }
            throw ModelError.writeFailed("\(url.path): writing failed (\(error.localizedDescription)); check free space and permissions")
        }
    }

    /// Length prefix and JSON header, padded with spaces so the data section starts 8-byte aligned.
    static func header(specs: [SafetensorsTensorSpec], metadata: [String: String]) -> Data {
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }
            entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for s in specs.sorted(by: { $0.name < $1.name }) {
            let shape = s.shape.map(String.init).joined(separator: ",")
            entries.append("\(jsonString(s.name)):{\"dtype\":\"\(s.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + s.byteCount)]}")
            offset += s.byteCount
        }
        var json = Array("{\(entries.joined(separator: ","))}".utf8)
        while (8 + json.count) % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = Data(capacity: 8 + json.count)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        return out
    }

    /// A JSON string literal.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Where a streaming write's tensor data goes: append floats (converted to the tensor's dtype) or raw
/// bytes; the writer checks that each tensor got exactly its byte count.
public struct SafetensorsSink {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var current: SafetensorsTensorSpec?
    private var written = 0
    private static let flushSize = 8 << 20

    init(handle: FileHandle) {
        self.handle = handle
        buffer.reserveCapacity(Self.flushSize + (1 << 16))
    }

    /// Appends floats to the current tensor, converted to its dtype (F32, F16 or BF16).
    public mutating func append(floats: UnsafeBufferPointer<Float>) throws {
        guard let spec = current, spec.dtype.isFloatingPoint else {
            throw ModelError.writeFailed("floats appended to \(current?.name ?? "no tensor") of dtype \(current?.dtype.rawValue ?? "-")")
        }
        let start = buffer.count
        let count = floats.count * spec.dtype.byteSize
        buffer.append(contentsOf: repeatElement(0, count: count))
        buffer.withUnsafeMutableBytes { ElementCodec.encode(floats, spec.dtype, into: UnsafeMutableRawBufferPointer(rebasing: $0[start..<(start + count)])) }
        written += count
        if buffer.count >= Self.flushSize { try flush() }
    }

    /// Appends floats to the current tensor, converted to its dtype.
    public mutating func append(floats: [Float]) throws {
        try floats.withUnsafeBufferPointer { try append(floats: $0) }
    }

    /// Appends raw little-endian bytes to the current tensor.
    public mutating func append(bytes: UnsafeRawBufferPointer) throws {
        guard current != nil else { throw ModelError.writeFailed("bytes appended outside a tensor") }
        buffer.append(contentsOf: bytes)
        written += bytes.count
        if buffer.count >= Self.flushSize { try flush() }
    }

    mutating func append(data: Data) throws {
        buffer.append(contentsOf: data)
        try flush()
    }

    mutating func begin(_ spec: SafetensorsTensorSpec) {
        current = spec
        written = 0
    }

    mutating func end() throws {
        if let spec = current, written != spec.byteCount {
            throw ModelError.writeFailed("tensor \(spec.name) (\(spec.dtype.rawValue) \(spec.shape)) needs \(spec.byteCount) bytes; the producer wrote \(written)")
        }
        current = nil
    }

    mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}
