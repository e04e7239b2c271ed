import Foundation

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Sendable, Equatable, Hashable {
    public let name: String
    public let dtype: SafetensorsDType
    /// Dimensions, outermost first (PyTorch order: a linear weight is [out, in], row-major).
    public let shape: [Int]
    /// Byte range relative to the start of the data section (the header's `data_offsets`).
    public let dataOffsets: Range<Int>

    public init(name: String, dtype: SafetensorsDType, shape: [Int], dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// Number of elements (1 for a scalar, shape []).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Number of bytes in the data section.
    public var byteCount: Int { dataOffsets.count }
}

/// The parsed and validated header of a safetensors file.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON (an object mapping tensor names to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` plus an optional `"__metadata__"` string map,
/// possibly padded with trailing spaces), then the data section. Validation is strict: every tensor's
/// byte count is its element count times its dtype size, tensors do not overlap, and together they
/// cover the data section exactly (the format forbids holes).
struct SafetensorsHeader: Sendable {
    /// The largest header accepted (the reference implementation's limit).
    static let maxHeaderLength: UInt64 = 100_000_000

    let tensors: [String: SafetensorsTensorInfo]
    let metadata: [String: String]
    /// Offset of the data section from the start of the file (8 + N).
    let dataStart: Int

    /// Parses the header of the file `bytes` (the whole file) and checks it against the file's size.
    static func parse(_ bytes: UnsafeRawBufferPointer, file: String) throws -> SafetensorsHeader {
        guard bytes.count >= 8 else { throw ModelError.truncatedFile(file: file, size: bytes.count, needed: 8) }
        let length = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard length <= maxHeaderLength, length <= UInt64(bytes.count - 8) else {
            throw ModelError.headerLengthOutOfRange(file: file, headerLength: length, fileSize: bytes.count)
        }
        let dataStart = 8 + Int(length)
        let json = Data(bytes[8..<dataStart])
        guard json.first == UInt8(ascii: "{") else {
            throw ModelError.headerNotJSON(file: file, detail: "it does not start with '{'")
        }
        let object: [String: Any]
        do {
            guard let o = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
                throw ModelError.headerNotJSON(file: file, detail: "the top level is not an object")
            }
            object = o
        } catch let error as ModelError {
            throw error
        } catch {
            throw ModelError.headerNotJSON(file: file, detail: "\(error)")
        }

        var metadata: [String: String] = [:]
        var tensors: [String: SafetensorsTensorInfo] = [:]
        for (key, value) in object {
            if key == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw ModelError.malformedHeader(file: file, detail: "__metadata__ is not an object of strings")
                }
                for (k, v) in map {
                    guard let s = v as? String else {
                        throw ModelError.malformedHeader(file: file, detail: "__metadata__ value for \(k) is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            tensors[key] = try entry(key, value, file: file, dataSize: bytes.count - dataStart)
        }
        try checkLayout(Array(tensors.values), dataSize: bytes.count - dataStart, dataStart: dataStart, file: file)
        return SafetensorsHeader(tensors: tensors, metadata: metadata, dataStart: dataStart)
    }

    /// One tensor entry, with its types, dtype and byte count checked.
    private static func entry(_ name: String, _ value: Any, file: String, dataSize: Int) throws -> SafetensorsTensorInfo {
        guard let fields = value as? [String: Any] else {
            throw ModelError.malformedHeader(file: file, detail: "entry for tensor \(name) is not an object")
        }
        guard let dtypeName = fields["dtype"] as? String else {
            throw ModelError.malformedHeader(file: file, detail: "tensor \(name) has no string dtype")
        }
        guard let shape = integers(fields["shape"]) else {
            throw ModelError.malformedHeader(file: file, detail: "tensor \(name): shape is not an array of non-negative integers")
        }
        guard let offsets = integers(fields["data_offsets"]), offsets.count == 2 else {
            throw ModelError.malformedHeader(file: file, detail: "tensor \(name): data_offsets is not two non-negative integers")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw ModelError.unsupportedDType(dtype: dtypeName, tensor: name, file: file)
        }
        guard offsets[0] <= offsets[1] else {
            throw ModelError.offsetsOutOfRange(tensor: name, file: file, begin: offsets[0], end: offsets[1], dataSize: dataSize)
        }
        var bytes = dtype.byteSize
        for d in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw ModelError.malformedHeader(file: file, detail: "tensor \(name): shape \(shape) is too large")
            }
            bytes = product
        }
        guard bytes == offsets[1] - offsets[0] else {
            throw ModelError.sizeMismatch(tensor: name, file: file, shape: shape, dtype: dtypeName,
                                          expectedBytes: bytes, foundBytes: offsets[1] - offsets[0])
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: offsets[0]..<offsets[1])
    }

    /// Non-negative integers from a JSON array, or nil (floats such as 2.5, negatives, strings: nil).
    private static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var out: [Int] = []
        out.reserveCapacity(array.count)
        for element in array {
            guard let number = element as? NSNumber, let d = Double(exactly: number.doubleValue),
                  d >= 0, d <= 9.007_199_254_740_992e15, d == d.rounded() else { return nil }
            out.append(number.intValue)
        }
        return out
    }

    /// Tensors must tile the data section: no overlaps, no holes, nothing past the end.
    private static func checkLayout(_ tensors: [SafetensorsTensorInfo], dataSize: Int, dataStart: Int, file: String) throws {
        let sorted = tensors.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        var end = 0
        var previous: String?
        var hole: Range<Int>?
        for t in sorted {
            if t.dataOffsets.lowerBound < end, let previous {
                throw ModelError.overlappingTensors(first: previous, second: t.name, file: file)
            }
            if t.dataOffsets.lowerBound > end, hole == nil { hole = end..<t.dataOffsets.lowerBound }
            end = max(end, t.dataOffsets.upperBound)
            previous = t.name
        }
        if end > dataSize {
            // A self-consistent header whose data was cut short is a truncated file; otherwise the
            // offsets themselves point outside the data.
            if hole == nil { throw ModelError.truncatedFile(file: file, size: dataStart + dataSize, needed: dataStart + end) }
            let outside = sorted.first { $0.dataOffsets.upperBound > dataSize } ?? sorted[sorted.count - 1]
            throw ModelError.offsetsOutOfRange(tensor: outside.name, file: file, begin: outside.dataOffsets.lowerBound,
                                               end: outside.dataOffsets.upperBound, dataSize: dataSize)
        }
        if let hole { throw ModelError.uncoveredBytes(file: file, begin: hole.lowerBound, end: hole.upperBound) }
        if end < dataSize { throw ModelError.uncoveredBytes(file: file, begin: end, end: dataSize) }
    }
}
