/// Everything that can go wrong reading, writing or running a model. Each case's `description` says
/// what is wrong, where (file and tensor), and what to do about it.
public enum ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    // MARK: safetensors files

    /// The file cannot be opened or read (the detail is the system's message).
    case unreadableFile(file: String, detail: String)

    /// The file is shorter than the 8-byte header length, or than the header plus the tensors need.
    case truncatedFile(file: String, size: Int, needed: Int)
    /// The 8-byte header length points past the end of the file (or past the 100 MB header limit).
    case headerLengthOutOfRange(file: String, headerLength: UInt64, fileSize: Int)
    /// The header is not a JSON object (the detail is the parser's message).
    case headerNotJSON(file: String, detail: String)
    /// The header is JSON, but an entry does not have the expected fields and types.
    case malformedHeader(file: String, detail: String)
    /// A tensor's dtype is not one lowbit reads.
    case unsupportedDType(dtype: String, tensor: String, file: String)
    /// A tensor's data_offsets are reversed or point past the data section.
    case offsetsOutOfRange(tensor: String, file: String, begin: Int, end: Int, dataSize: Int)
    /// Two tensors share bytes.
    case overlappingTensors(first: String, second: String, file: String)
    /// Bytes of the data section that no tensor covers (the format forbids holes).
    case uncoveredBytes(file: String, begin: Int, end: Int)
    /// A tensor's byte count is not its element count times its dtype's size.
    case sizeMismatch(tensor: String, file: String, shape: [Int], dtype: String, expectedBytes: Int, foundBytes: Int)
    /// The tensor was asked for but no file holds it.
    case missingTensor(tensor: String, location: String)
    /// The tensor exists but has another shape than the model needs.
    case wrongShape(tensor: String, expected: [Int], found: [Int])
    /// The tensor's dtype cannot be read the way it was asked for (e.g. floats from I32).
    case wrongDType(tensor: String, expected: String, found: String)
    /// A tensor is listed twice (two shards, or a name the writer was given twice).
    case duplicateTensor(tensor: String, locations: [String])

    // MARK: model directories and configs

    /// config.json is missing, unreadable, or not a Llama config.
    case invalidConfig(String)
    /// The model directory is missing a file, or its index is inconsistent.
    case invalidModelDirectory(String)
    /// A file could not be written, or a writer was given data that does not fit what it declared.
    case writeFailed(String)
    /// A forward pass was given an input it cannot run (a token outside the vocabulary, ...).
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .unreadableFile(file, detail):
            return "\(file): cannot read the file (\(detail)); check the path and its permissions"
        case let .truncatedFile(file, size, needed):
            return "\(file): truncated file: \(size) bytes, but its header needs \(needed); the download or write was cut short, fetch or write the file again"
        case let .headerLengthOutOfRange(file, length, size):
            return "\(file): header length \(length) (first 8 bytes, little-endian) is past the end of the \(size)-byte file or over the 100 MB limit; this is not a safetensors file or it is truncated"
        case let .headerNotJSON(file, detail):
            return "\(file): the header is not a JSON object (\(detail)); this is not a safetensors file or it is corrupt"
        case let .malformedHeader(file, detail):
            return "\(file): malformed header: \(detail)"
        case let .unsupportedDType(dtype, tensor, file):
            return "\(file): unsupported dtype \(dtype) for tensor \(tensor); lowbit reads \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")); convert the checkpoint to one of them"
        case let .offsetsOutOfRange(tensor, file, begin, end, dataSize):
            return "\(file): tensor \(tensor) has data_offsets [\(begin), \(end)] outside the \(dataSize)-byte data section (or begin > end); the file is corrupt or truncated"
        case let .overlappingTensors(first, second, file):
            return "\(file): tensors \(first) and \(second) overlap in the data section; the file is corrupt"
        case let .uncoveredBytes(file, begin, end):
            return "\(file): bytes [\(begin), \(end)) of the data section belong to no tensor (safetensors forbids holes); the file is corrupt or was written by a broken writer"
        case let .sizeMismatch(tensor, file, shape, dtype, expected, found):
            return "\(file): tensor \(tensor) of shape \(shape) and dtype \(dtype) needs \(expected) bytes but its data_offsets span \(found); the header is inconsistent"
        case let .missingTensor(tensor, location):
            return "tensor \(tensor) not found in \(location); check that the checkpoint is a complete Llama model with Hugging Face tensor names"
        case let .wrongShape(tensor, expected, found):
            return "tensor \(tensor) has shape \(found), expected \(expected) from config.json; the weights do not match the config"
        case let .wrongDType(tensor, expected, found):
            return "tensor \(tensor) has dtype \(found); this read needs \(expected)"
        case let .duplicateTensor(tensor, locations):
            return "tensor \(tensor) appears more than once (\(locations.joined(separator: ", "))); remove the stray shard or fix the index"
        case let .invalidConfig(message), let .invalidModelDirectory(message), let .writeFailed(message),
             let .invalidInput(message):
            return message
        }
    }
}
