import Foundation
import Glibc

/// The reply envelope a worker sends for each request: exactly one of `ok` (the handler's result,
/// base64 in JSON) or `error` (the message of the error the handler threw).
struct WorkerReply: Codable, Equatable {
    var ok: Data?
    var error: String?
}

/// The worker side of the protocol: the main loop of a `lowbit worker` process.
public enum WorkerServer {
    /// Serves requests until standard input ends, then exits 0. Never returns.
    ///
    /// At start the real standard output is moved to a private descriptor used only for reply frames,
    /// and standard error is duplicated onto descriptor 1: whatever a kernel or a library prints (to
    /// stdout or stderr) ends up on stderr, where `WorkerProcess` keeps its tail, and can never corrupt
    /// the protocol. A crashing kernel is an expected, reported outcome, so core dumps are switched off
    /// and the fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT) get their default
    /// action back: the worker dies at once with that signal instead of running the Swift runtime's
    /// backtracer first.
    ///
    /// Each request frame's payload is passed to `handler`; its result is sent back as
    /// `{"ok": <base64>}`, or `{"error": "<message>"}` when it throws. A protocol failure (a truncated
    /// frame, an unwritable reply pipe) ends the process with status 2 and a message on stderr.
    public static func serve(handler: (Data) throws -> Data) -> Never {
        var noCore = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore) == 0 {
            noCore.rlim_cur = 0
            _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        }
        for fault in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT] { signal(fault, SIG_DFL) }
        // Ctrl-C reaches the whole process group: the parent decides when to stop (after the trial
        // in flight), so the worker ignores it and ends when its input closes.
        signal(SIGINT, SIG_IGN)
        fflush(nil)  // whatever was printed so far goes out through the old stdout
        let replyFD = fcntl(1, F_DUPFD_CLOEXEC, 3)
        guard replyFD >= 0, dup2(2, 1) == 1 else {
            warn("lowbit worker: cannot set up the reply descriptor: \(String(cString: strerror(errno)))\n")
            exit(2)
        }
        exit(serveLoop(input: 0, output: replyFD, handler: handler))
    }

    /// The request loop on explicit descriptors; returns the exit status (0 at end of input).
    static func serveLoop(input: Int32, output: Int32, handler: (Data) throws -> Data) -> Int32 {
        let encoder = JSONEncoder()
        while true {
            let request: Data
            do {
                guard let frame = try Frame.read(from: input) else { return 0 }
                request = frame
            } catch {
                warn("lowbit worker: bad request stream: \(error)\n")
                return 2
            }
            var reply: WorkerReply
            do {
                reply = WorkerReply(ok: try handler(request), error: nil)
            } catch {
                reply = WorkerReply(ok: nil, error: "\(error)")
            }
            do {
                let encoded: Data
                do {
                    encoded = try encoder.encode(reply)
                } catch {
                    encoded = try encoder.encode(WorkerReply(ok: nil, error: "cannot encode the reply: \(error)"))
                }
                try Frame.write(encoded, to: output)
            } catch {
                warn("lowbit worker: cannot send a reply: \(error)\n")
                return 2
            }
        }
    }
}

/// Writes a line to standard error without going through stdio.
func warn(_ message: String) {
    let line = Array((message.hasSuffix("\n") ? message : message + "\n").utf8)
    line.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
}
