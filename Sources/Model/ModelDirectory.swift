import Foundation

/// A Hugging Face model directory: `config.json` and the weights in one or more `*.safetensors` files.
///
/// With a `model.safetensors.index.json`, its `weight_map` (tensor name -> file name) decides which
/// file holds which tensor, and every file it names must exist and hold the tensors mapped to it.
/// Without an index, every `*.safetensors` file in the directory is opened and a tensor name may
/// appear in only one of them.
public struct ModelDirectory: Sendable {
    public let url: URL
    public let config: LlamaConfig
    /// The opened weight files, by file name.
    public let files: [String: SafetensorsFile]
    /// Which file holds each tensor.
    public let tensorFiles: [String: String]

    /// Opens the directory: reads and validates config.json, opens and validates every weight file.
    public init(url: URL) throws {
        self.url = url
        config = try LlamaConfig.load(from: url)
        let fm = FileManager.default
        let index = url.appendingPathComponent("model.safetensors.index.json")
        var files: [String: SafetensorsFile] = [:]
        var tensorFiles: [String: String] = [:]
        if fm.fileExists(atPath: index.path) {
            let weightMap = try Self.weightMap(index)
            for fileName in Set(weightMap.values).sorted() {
                guard !fileName.contains("/"), fileName != "..", fileName != "." else {
                    throw ModelError.invalidModelDirectory("\(index.path) names \(fileName); shards must be plain file names in the model directory")
                }
                files[fileName] = try SafetensorsFile(contentsOf: url.appendingPathComponent(fileName))
            }
            for (tensor, fileName) in weightMap {
                guard files[fileName]?.tensors[tensor] != nil else {
                    throw ModelError.invalidModelDirectory("\(index.path) maps \(tensor) to \(fileName), which does not hold it; the index and the shards disagree")
                }
                tensorFiles[tensor] = fileName
            }
        } else {
            let names: [String]
            do {
                names = try fm.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".safetensors") }.sorted()
            } catch {
                throw ModelError.invalidModelDirectory("\(url.path): cannot list the directory (\(error.localizedDescription))")
            }
            guard !names.isEmpty else {
                throw ModelError.invalidModelDirectory("\(url.path) has no *.safetensors file; lowbit reads safetensors weights only (convert .bin/.pth checkpoints first)")
            }
            for name in names {
                let file = try SafetensorsFile(contentsOf: url.appendingPathComponent(name))
                files[name] = file
                for tensor in file.tensors.keys {
                    if let other = tensorFiles[tensor] { throw ModelError.duplicateTensor(tensor: tensor, locations: [other, name]) }
                    tensorFiles[tensor] = name
                }
            }
        }
        self.files = files
        self.tensorFiles = tensorFiles
    }

    /// Every tensor name, sorted.
    public var tensorNames: [String] { tensorFiles.keys.sorted() }

    /// The file holding `tensor`, or `ModelError.missingTensor`.
    public func file(holding tensor: String) throws -> SafetensorsFile {
        guard let name = tensorFiles[tensor], let file = files[name] else {
            throw ModelError.missingTensor(tensor: tensor, location: url.path)
        }
        return file
    }

    /// The entry of `tensor` in whichever file holds it.
    public func info(_ tensor: String) throws -> SafetensorsTensorInfo { try file(holding: tensor).info(tensor) }

    /// A floating-point tensor as Floats, checked to have `shape`.
    public func floats(_ tensor: String, shape: [Int]) throws -> [Float] {
        try file(holding: tensor).floats(tensor, shape: shape)
    }

    /// A linear weight [out, in] as a Matrix.
    public func matrix(_ tensor: String, rows: Int, cols: Int) throws -> Matrix {
        Matrix(rows: rows, cols: cols, values: try floats(tensor, shape: [rows, cols]))
    }

    /// Total bytes of tensor data over all files.
    public var dataByteCount: Int { files.values.reduce(0) { $0 + $1.dataByteCount } }

    private static func weightMap(_ index: URL) throws -> [String: String] {
        struct Index: Decodable { var weight_map: [String: String] }
        guard let data = FileManager.default.contents(atPath: index.path) else {
            throw ModelError.invalidModelDirectory("\(index.path) cannot be read")
        }
        do {
            return try JSONDecoder().decode(Index.self, from: data).weight_map
        } catch {
            throw ModelError.invalidModelDirectory("\(index.path) is not a safetensors index with a weight_map object of strings (\(error))")
        }
    }
}
