import Foundation
import Glibc
import Testing

@testable import Measure

/// A pipe whose ends are closed when the test is done with them.
final class TestPipe {
    var reader: Int32
    var writer: Int32
    init() {
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0)
        reader = fds[0]
        writer = fds[1]
    }
    func closeWriter() {
        if writer >= 0 { close(writer); writer = -1 }
    }
    func closeReader() {
        if reader >= 0 { close(reader); reader = -1 }
    }
    func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = Glibc.write(writer, $0.baseAddress, $0.count) }
    }
    deinit {
        closeWriter()
        closeReader()
    }
}

@Suite("Frames")
struct FrameTests {
    @Test func encodingIsLittleEndianLengthThenPayload() throws {
        let frame = Frame.encode(Data("hello".utf8))
        #expect(Array(frame) == [5, 0, 0, 0] + Array("hello".utf8))
        let big = Data(repeating: 7, count: 0x0102_03)
        #expect(Array(Frame.encode(big).prefix(4)) == [0x03, 0x02, 0x01, 0x00])
        #expect(Frame.encode(Data()).count == 4)
    }

    @Test func decodingNeedsAWholeFrame() throws {
        let two = Frame.encode(Data("ab".utf8)) + Frame.encode(Data("cde".utf8))
        let first = try #require(try Frame.decode(two))
        #expect(first.payload == Data("ab".utf8))
        #expect(first.consumed == 6)
        let second = try #require(try Frame.decode(two.dropFirst(first.consumed)))
        #expect(second.payload == Data("cde".utf8))
        #expect(try Frame.decode(Data([3, 0, 0])) == nil)
        #expect(try Frame.decode(Data([3, 0, 0, 0, 1, 2])) == nil)
        #expect(throws: FrameError.tooLarge(0x7fff_ffff)) { try Frame.decode(Data([0xff, 0xff, 0xff, 0x7f])) }
    }

    @Test func roundTripThroughAPipe() throws {
        let pipe = TestPipe()
        let payloads = [Data(), Data("x".utf8), Data((0..<3000).map { UInt8($0 % 251) })]
        for payload in payloads { try Frame.write(payload, to: pipe.writer) }
        pipe.closeWriter()
        for payload in payloads { #expect(try Frame.read(from: pipe.reader) == payload) }
        #expect(try Frame.read(from: pipe.reader) == nil, "clean end of stream")
    }

    @Test func truncatedFrameIsAnError() throws {
        let pipe = TestPipe()
        pipe.write([10, 0, 0, 0, 1, 2, 3])
        pipe.closeWriter()
        #expect(throws: FrameError.truncated(expected: 14, received: 7)) { try Frame.read(from: pipe.reader) }

        let header = TestPipe()
        header.write([10, 0])
        header.closeWriter()
        #expect(throws: FrameError.truncated(expected: 4, received: 2)) { try Frame.read(from: header.reader) }
    }

    @Test func readTimesOut() throws {
        let pipe = TestPipe()
        pipe.write([10, 0, 0, 0, 1])  // a frame that never completes
        let start = ContinuousClock.now
        #expect(throws: FrameError.timedOut) {
            try Frame.read(from: pipe.reader, deadline: .now + .milliseconds(100))
        }
        let elapsed = start.duration(to: .now)
        #expect(elapsed >= .milliseconds(90) && elapsed < .seconds(5))
    }

    @Test func serverLoopAnswersEachRequestAndStopsAtEndOfInput() throws {
        let requests = TestPipe()
        let replies = TestPipe()
        let status = StatusBox()
        let (input, output) = (requests.reader, replies.writer)
        let finished = DispatchSemaphore(value: 0)
        Thread {
            status.value = WorkerServer.serveLoop(input: input, output: output) { request in
                if request == Data("boom".utf8) { throw TestFailure(message: "kernel exploded") }
                return Data(request.reversed())
            }
            finished.signal()
        }.start()

        try Frame.write(Data("abc".utf8), to: requests.writer)
        let ok = try JSONDecoder().decode(WorkerReply.self, from: #require(try Frame.read(from: replies.reader)))
        #expect(ok == WorkerReply(ok: Data("cba".utf8), error: nil))

        try Frame.write(Data("boom".utf8), to: requests.writer)
        let raw = try #require(try Frame.read(from: replies.reader))
        let failed = try JSONDecoder().decode(WorkerReply.self, from: raw)
        #expect(failed.ok == nil)
        #expect(failed.error?.contains("kernel exploded") == true)
        #expect(String(decoding: raw, as: UTF8.self).hasPrefix("{\"error\":"))

        requests.closeWriter()
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(status.value == 0)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

final class StatusBox: @unchecked Sendable {
    var value: Int32 = -1
}
