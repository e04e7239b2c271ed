import Foundation
import Glibc

/// Errors of the framed pipe protocol between lowbit and its worker processes.
public enum FrameError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The peer closed the stream in the middle of a frame.
    case truncated(expected: Int, received: Int)
    /// A frame header announced more than `Frame.maxPayloadBytes`: the stream is not speaking the protocol.
    case tooLarge(Int)
    /// The deadline passed before the frame was complete.
    case timedOut
    /// The reading end is gone (EPIPE / ECONNRESET on write).
    case closed
    /// Any other system-call failure.
    case io(call: String, errno: Int32, message: String)

    public var description: String {
        switch self {
        case let .truncated(expected, received):
            return "stream closed in the middle of a frame (\(received) of \(expected) bytes)"
        case let .tooLarge(length):
            return "frame of \(length) bytes exceeds the limit of \(Frame.maxPayloadBytes) (not a lowbit worker stream?)"
        case .timedOut:
            return "timed out"
        case .closed:
            return "the other end closed the stream"
        case let .io(call, errno, message):
            return "\(call) failed: \(message) (errno \(errno))"
        }
    }

    static func fromErrno(_ call: String) -> FrameError {
        let code = errno
        return .io(call: call, errno: code, message: String(cString: strerror(code)))
    }
}

/// The framing used on worker pipes: a 4-byte little-endian payload length, then the payload.
/// The payload is opaque bytes (the callers put JSON in it).
public enum Frame {
    /// The largest payload accepted; anything larger means the stream is corrupt.
    public static let maxPayloadBytes = 1 << 30

    /// `payload` with its 4-byte little-endian length in front.
    public static func encode(_ payload: Data) -> Data {
        precondition(payload.count <= maxPayloadBytes, "frame payload of \(payload.count) bytes is too large")
        var length = UInt32(payload.count).littleEndian
        var frame = Data(bytes: &length, count: 4)
        frame.append(payload)
        return frame
    }

    /// Decodes the frame at the start of `buffer`. Returns nil when `buffer` does not yet hold a whole
    /// frame, otherwise the payload and how many bytes of `buffer` the frame used.
    public static func decode(_ buffer: Data) throws -> (payload: Data, consumed: Int)? {
        guard buffer.count >= 4 else { return nil }
        let length = payloadLength(buffer.prefix(4))
        guard length <= maxPayloadBytes else { throw FrameError.tooLarge(length) }
        guard buffer.count >= 4 + length else { return nil }
        let start = buffer.startIndex + 4
        return (Data(buffer[start..<start + length]), 4 + length)
    }

    /// Writes one frame to `fd`, waiting at most until `deadline` (nil: no limit) for the reader.
    /// Works on pipes and sockets; on a socket it never raises SIGPIPE (a gone reader is `.closed`).
    public static func write(_ payload: Data, to fd: Int32, deadline: ContinuousClock.Instant? = nil) throws {
        try writeAll(encode(payload), to: fd, deadline: deadline)
    }

    /// Reads one frame from `fd`. Returns nil at a clean end of stream (before the first header byte).
    /// - Throws: `FrameError.timedOut` when `deadline` passes, `.truncated` when the stream ends inside
    ///   a frame, `.tooLarge` for a nonsensical header, `.io` for other failures.
    public static func read(from fd: Int32, deadline: ContinuousClock.Instant? = nil) throws -> Data? {
        var header = [UInt8](repeating: 0, count: 4)
        let got = try readFully(fd, into: &header, deadline: deadline)
        if got == 0 { return nil }
        guard got == 4 else { throw FrameError.truncated(expected: 4, received: got) }
        let length = payloadLength(Data(header))
        guard length <= maxPayloadBytes else { throw FrameError.tooLarge(length) }
        var payload = [UInt8](repeating: 0, count: length)
        let received = try readFully(fd, into: &payload, deadline: deadline)
        guard received == length else { throw FrameError.truncated(expected: 4 + length, received: 4 + received) }
        return Data(payload)
    }

    // MARK: Helpers

    private static func payloadLength(_ header: Data) -> Int {
        let bytes = Array(header)
        return Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
    }

    /// Waits until `fd` is ready for `events` or `deadline` passes (then throws `.timedOut`).
    static func waitReady(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant?) throws {
        while true {
            var timeoutMS: Int32 = -1
            if let deadline {
                let remaining = ContinuousClock.now.duration(to: deadline)
                if remaining <= .zero { throw FrameError.timedOut }
                let (seconds, attoseconds) = remaining.components
                let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
                timeoutMS = Int32(clamping: ms)
            }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&pfd, 1, timeoutMS)
            if ready > 0 { return }  // readable, writable, or hung up: the next call says which
            if ready < 0, errno != EINTR { throw FrameError.fromErrno("poll") }
        }
    }

    /// Reads until `buffer` is full or the stream ends; returns the number of bytes read.
    private static func readFully(_ fd: Int32, into buffer: inout [UInt8], deadline: ContinuousClock.Instant?)
        throws -> Int
    {
        var filled = 0
        while filled < buffer.count {
            try waitReady(fd, events: Int16(POLLIN), deadline: deadline)
            let n = buffer.withUnsafeMutableBytes { raw in
                Glibc.read(fd, raw.baseAddress! + filled, raw.count - filled)
            }
            if n > 0 {
                filled += n
            } else if n == 0 {
                return filled
            } else if errno == EAGAIN || errno == EINTR {
                continue
            } else if errno == ECONNRESET {
                return filled
            } else {
                throw FrameError.fromErrno("read")
            }
        }
        return filled
    }

    private static func writeAll(_ data: Data, to fd: Int32, deadline: ContinuousClock.Instant?) throws {
        let bytes = [UInt8](data)
        var sent = 0
        var isSocket = true
        while sent < bytes.count {
            try waitReady(fd, events: Int16(POLLOUT), deadline: deadline)
            let n = bytes.withUnsafeBytes { raw -> Int in
                let base = raw.baseAddress! + sent
                if isSocket {
                    let r = send(fd, base, raw.count - sent, Int32(MSG_NOSIGNAL))
                    if r >= 0 || errno != ENOTSOCK { return r }
                    isSocket = false
                }
                return Glibc.write(fd, base, raw.count - sent)
            }
            if n >= 0 {
                sent += n
            } else if errno == EAGAIN || errno == EINTR {
                continue
            } else if errno == EPIPE || errno == ECONNRESET {
                throw FrameError.closed
            } else {
                throw FrameError.fromErrno("write")
            }
        }
    }
}
