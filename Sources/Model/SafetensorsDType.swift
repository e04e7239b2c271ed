/// The safetensors element types lowbit reads and writes. Raw values are the header's spelling.
public enum SafetensorsDType: String, CaseIterable, Sendable, Codable {
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i8 = "I8"
    case u8 = "U8"
    case i32 = "I32"
    case i64 = "I64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .i8, .u8: return 1
        case .i64: return 8
        }
    }

    /// Floating-point types, which `SafetensorsFile.floats` converts to Float.
    public var isFloatingPoint: Bool { self == .f32 || self == .f16 || self == .bf16 }

    /// Parses a lower-case or header spelling ("f16", "F16", "bf16", "float16", "bfloat16", "float32").
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "float32", "float": self = .f32
        case "f16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        default:
            guard let d = SafetensorsDType(rawValue: name.uppercased()) else { return nil }
            self = d
        }
    }

    /// The `torch_dtype` spelling used in Hugging Face config.json files, for the float types.
    public var torchName: String? {
        switch self {
        case .f32: return "float32"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        default: return nil
        }
    }
}

/// Bulk element conversions between little-endian file bytes and Floats: the module's unsafe code for
/// tensor data lives here. Loops are plain so that the optimizer can vectorize them.
enum ElementCodec {
    /// Decodes `out.count` elements of a floating-point `dtype` from `raw` (unaligned, little-endian).
    static func decode(_ raw: UnsafeRawBufferPointer, _ dtype: SafetensorsDType, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(dtype.isFloatingPoint && raw.count >= out.count * dtype.byteSize)
        let parts = min(out.count, Parallel.parts(work: out.count, threshold: 1 << 20))
        guard parts > 1 else { return decodeRange(raw, dtype, into: out) }
        let source = SharedPointer(raw), target = SharedPointer(out)
        Parallel.forEach(parts) { p in
            let lo = target.pointer.count * p / parts, hi = target.pointer.count * (p + 1) / parts
            decodeRange(
                UnsafeRawBufferPointer(rebasing: source.pointer[(lo * dtype.byteSize)..<(hi * dtype.byteSize)]), dtype,
                into: UnsafeMutableBufferPointer(rebasing: target.pointer[lo..<hi]))
        }
    }

    private static func decodeRange(_ raw: UnsafeRawBufferPointer, _ dtype: SafetensorsDType, into out: UnsafeMutableBufferPointer<Float>) {
        let n = out.count
        switch dtype {
        case .f32:
            for i in 0..<n {
                out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
        case .f16:
            for i in 0..<n {
                out[i] = HalfFloat.float(fp16: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bf16:
            for i in 0..<n {
                out[i] = HalfFloat.float(bf16: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        default:
            preconditionFailure("not a floating-point dtype")
        }
    }

    /// Encodes `values` as `dtype` (F32, F16 or BF16) into `out` (little-endian, rounding to nearest even).
    static func encode(_ values: UnsafeBufferPointer<Float>, _ dtype: SafetensorsDType, into out: UnsafeMutableRawBufferPointer) {
        precondition(dtype.isFloatingPoint && out.count >= values.count * dtype.byteSize)
        switch dtype {
        case .f32:
            for i in values.indices {
                out.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
            }
        case .f16:
            for i in values.indices {
                out.storeBytes(of: HalfFloat.fp16Bits(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        case .bf16:
            for i in values.indices {
                out.storeBytes(of: HalfFloat.bf16Bits(values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        default:
            preconditionFailure("not a floating-point dtype")
        }
    }

    /// Floats as `dtype` bytes.
    static func bytes(of values: [Float], as dtype: SafetensorsDType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
        values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { encode(src, dtype, into: $0) }
        }
        return out
    }

    /// Fixed-width integers as little-endian bytes.
    static func bytes<T: FixedWidthInteger>(of values: [T]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * MemoryLayout<T>.size)
        out.withUnsafeMutableBytes { raw in
            for i in values.indices {
                raw.storeBytes(of: values[i].littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self)
            }
        }
        return out
    }

    /// Little-endian bytes as fixed-width integers.
    static func integers<T: FixedWidthInteger>(_ raw: UnsafeRawBufferPointer, count: Int, as _: T.Type) -> [T] {
        precondition(raw.count >= count * MemoryLayout<T>.size)
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            for i in 0..<count {
                buffer[i] = T(littleEndian: raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
            }
            initialized = count
        }
    }
}
