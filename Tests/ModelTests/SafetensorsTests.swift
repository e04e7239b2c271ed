import Foundation
import Testing
@testable import Model

@Suite("safetensors reader and writer")
struct SafetensorsTests {
    /// One tensor of every dtype, a scalar and an empty tensor.
    static func sample() throws -> [String: SafetensorsTensor] {
        let floats: [Float] = [1, -2, 0.5, 65504, 0x1p-24, -0.0, 3.25, 1024]
        return [
            "f32": try SafetensorsTensor(floats: [1.5, -2.25, .pi, 1e-30, -1e30, 0], shape: [2, 3], dtype: .f32),
            "f16": try SafetensorsTensor(floats: floats, shape: [2, 2, 2], dtype: .f16),
            "bf16": try SafetensorsTensor(floats: [1, -2, 0.5, 3.0e38, -1e-38, 256], shape: [6], dtype: .bf16),
            "i8": try SafetensorsTensor(int8s: [-128, -1, 0, 1, 127], shape: [5]),
            "u8": try SafetensorsTensor(uint8s: [0, 1, 128, 255], shape: [2, 2]),
            "i32": try SafetensorsTensor(int32s: [.min, -1, 0, 7, .max], shape: [5]),
            "i64": try SafetensorsTensor(int64s: [.min, 0, .max], shape: [3]),
            "scalar": try SafetensorsTensor(floats: [42], shape: [], dtype: .f32),
            "empty": try SafetensorsTensor(floats: [], shape: [0, 3], dtype: .f16),
        ]
    }

    @Test func roundTripEveryDTypeWithMetadata() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let tensors = try Self.sample()
        let metadata = ["format": "pt", "note": "quote \" backslash \\ newline \n done", "ünï": "cödé"]
        let url = dir.file("sample.safetensors")
        try SafetensorsWriter.write(tensors, metadata: metadata, to: url)
        let file = try SafetensorsFile(contentsOf: url)

        #expect(file.metadata == metadata)
        #expect(file.names == tensors.keys.sorted())
        for (name, t) in tensors {
            let info = try file.info(name)
            #expect(info.dtype == t.dtype && info.shape == t.shape, "\(name)")
            #expect(try file.rawBytes(name) == t.bytes, "\(name)")
        }
        #expect(try file.floats("f32") == [1.5, -2.25, .pi, 1e-30, -1e30, 0])
        #expect(try file.floats("f16", shape: [2, 2, 2]) == [1, -2, 0.5, 65504, 0x1p-24, -0.0, 3.25, 1024])
        #expect(try file.floats("bf16").map(HalfFloat.bf16Bits) == [1, -2, 0.5, 3.0e38, -1e-38, 256].map(HalfFloat.bf16Bits))
        #expect(try file.int8s("i8") == [-128, -1, 0, 1, 127])
        #expect(try file.uint8s("u8") == [0, 1, 128, 255])
        #expect(try file.int32s("i32") == [.min, -1, 0, 7, .max])
        #expect(try file.int64s("i64") == [.min, 0, .max])
        #expect(try file.floats("scalar") == [42])
        #expect(try file.floats("empty").isEmpty)
    }

    @Test func layoutIsAlignedSortedAndDeterministic() throws {
        let tensors = try Self.sample()
        let a = try SafetensorsWriter.data(tensors, metadata: ["k": "v"])
        let b = try SafetensorsWriter.data(tensors, metadata: ["k": "v"])
        #expect(a == b)
        let length = a.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        #expect((8 + length) % 8 == 0, "the data section starts 8-byte aligned")
        let header = String(decoding: a[8..<(8 + Int(length))], as: UTF8.self)
        #expect(header.hasSuffix(" ") || header.hasSuffix("}"))
        #expect(header.hasPrefix("{\"__metadata__\":{\"k\":\"v\"}"))
        let order = ["bf16", "empty", "f16", "f32", "i32", "i64", "i8", "scalar", "u8"]
        let positions = order.map { header.range(of: "\"\($0)\":")?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil } && positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
        let file = try SafetensorsFile(data: a)
        #expect(try file.info("bf16").dataOffsets.lowerBound == 0, "the first tensor in name order is first in the data")
    }

    @Test func floatsAreRoundedToTheStorageType() throws {
        let values: [Float] = [0.1, 1 + 0x1p-11, 1 + 3 * 0x1p-11, 70000, 3 * 0x1p-26]
        let file = try SafetensorsFile(data: SafetensorsWriter.data([
            "h": try SafetensorsTensor(floats: values, shape: [5], dtype: .f16),
            "b": try SafetensorsTensor(floats: values, shape: [5], dtype: .bf16),
        ]))
        #expect(try file.floats("h") == values.map(HalfFloat.roundedToFP16))
        #expect(try file.floats("h")[3] == .infinity)
        #expect(try file.floats("b") == values.map(HalfFloat.roundedToBF16))
    }

    @Test func streamingWriterChecksEachTensorsByteCount() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("s.safetensors")
        let specs = [SafetensorsTensorSpec(name: "a", dtype: .f16, shape: [4])]
        #expect(errorCase {
            try SafetensorsWriter.write(specs: specs, to: url) { _, sink in try sink.append(floats: [1, 2, 3]) }
        } == "writeFailed")
        #expect(!FileManager.default.fileExists(atPath: url.path), "no partial file is left behind")
        try SafetensorsWriter.write(specs: specs, to: url) { _, sink in try sink.append(floats: [1, 2, 3, 4]) }
        #expect(try SafetensorsFile(contentsOf: url).floats("a") == [1, 2, 3, 4])
        #expect(errorCase { _ = try SafetensorsTensor(floats: [1, 2], shape: [3]) } == "writeFailed")
    }

    // MARK: rejection of bad files

    static let goodHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    static let eightBytes = [UInt8](repeating: 0, count: 8)

    @Test func acceptsTheHandWrittenBaseline() throws {
        let file = try SafetensorsFile(data: rawSafetensors(header: Self.goodHeader, data: Self.eightBytes))
        #expect(try file.floats("a") == [0, 0])
    }

    @Test func rejectsTruncatedFiles() {
        let good = rawSafetensors(header: Self.goodHeader, data: Self.eightBytes)
        #expect(errorCase { _ = try SafetensorsFile(data: good.dropLast(3)) } == "truncatedFile")
        #expect(errorCase { _ = try SafetensorsFile(data: Data([1, 2, 3])) } == "truncatedFile")
        let e = modelError { _ = try SafetensorsFile(data: good.dropLast(3), location: "x.safetensors") }
        #expect(e?.description.contains("x.safetensors: truncated file") == true)
    }

    @Test func rejectsHeaderLengthPastTheEnd() {
        let file = rawSafetensors(header: Self.goodHeader, data: Self.eightBytes, headerLength: 10_000)
        #expect(errorCase { _ = try SafetensorsFile(data: file) } == "headerLengthOutOfRange")
        let huge = rawSafetensors(header: Self.goodHeader, data: Self.eightBytes, headerLength: .max)
        #expect(errorCase { _ = try SafetensorsFile(data: huge) } == "headerLengthOutOfRange")
    }

    @Test func rejectsHeadersThatAreNotJSON() {
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: "{not json at all", data: [])) } == "headerNotJSON")
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: "[1, 2]", data: [])) } == "headerNotJSON")
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: "\u{1}\u{2}garbage", data: [])) } == "headerNotJSON")
    }

    @Test func rejectsUnknownDTypesNamingTheTensor() {
        let header = #"{"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#
        let e = modelError { _ = try SafetensorsFile(data: rawSafetensors(header: header, data: Self.eightBytes)) }
        #expect(e == .unsupportedDType(dtype: "F64", tensor: "w", file: "<memory>"))
        #expect(e?.description.contains("unsupported dtype F64 for tensor w; lowbit reads F32, F16, BF16") == true)
    }

    @Test func rejectsBadOffsets() {
        let reversed = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: reversed, data: Self.eightBytes)) } == "offsetsOutOfRange")
        let past = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}}"#
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: past, data: Self.eightBytes)) } == "offsetsOutOfRange")
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: overlap, data: Self.eightBytes)) } == "overlappingTensors")
        let hole = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: hole, data: Self.eightBytes)) } == "uncoveredBytes")
        let trailing = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: trailing, data: Self.eightBytes)) } == "uncoveredBytes")
    }

    @Test func rejectsShapesThatDoNotMatchTheByteCount() {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        let e = modelError { _ = try SafetensorsFile(data: rawSafetensors(header: header, data: Self.eightBytes)) }
        #expect(e == .sizeMismatch(tensor: "a", file: "<memory>", shape: [3], dtype: "F32", expectedBytes: 12, foundBytes: 8))
    }

    @Test func rejectsMalformedEntries() {
        for header in [
            #"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#,
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#,
            #"{"a":{"shape":[2],"data_offsets":[0,8]}}"#,
            #"{"a":[1,2]}"#,
            #"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        ] {
            #expect(errorCase { _ = try SafetensorsFile(data: rawSafetensors(header: header, data: Self.eightBytes)) } == "malformedHeader", "\(header)")
        }
    }

    @Test func readsAreCheckedForNameShapeAndDType() throws {
        let file = try SafetensorsFile(data: SafetensorsWriter.data(try Self.sample()))
        #expect(modelError { _ = try file.floats("nope") } == .missingTensor(tensor: "nope", location: "<memory>"))
        #expect(modelError { _ = try file.floats("f32", shape: [3, 2]) } == .wrongShape(tensor: "f32", expected: [3, 2], found: [2, 3]))
        #expect(errorCase { _ = try file.floats("i8") } == "wrongDType")
        #expect(errorCase { _ = try file.int32s("i8") } == "wrongDType")
        #expect(errorCase { _ = try SafetensorsFile(contentsOf: URL(fileURLWithPath: "/nonexistent/x.safetensors")) } == "unreadableFile")
    }
}
