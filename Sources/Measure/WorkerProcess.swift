import Foundation
import Glibc
import Logging

/// What became of one request sent to a worker process.
public enum WorkerOutcome: Sendable, Equatable, CustomStringConvertible {
    /// The handler returned this payload.
    case reply(Data)
    /// The handler threw; the worker is still running.
    case failed(String)
    /// The worker was killed by a signal (a kernel that faults: SIGSEGV, SIGBUS, SIGILL, SIGFPE,
    /// SIGABRT...). `stderrTail` is the end of what it printed.
    case crashed(signal: Int32, name: String, stderrTail: String)
    /// The worker exited (with `status`) without answering.
    case exited(status: Int32, stderrTail: String)
    /// No answer within the limit; the worker was killed with SIGKILL.
    case timedOut(after: Duration, stderrTail: String)

    public var description: String {
        func tail(_ text: String) -> String {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty ? "" : "; its last output:\n\(trimmed)"
        }
        switch self {
        case let .reply(data): return "reply of \(data.count) bytes"
        case let .failed(message): return "worker reported an error: \(message)"
        case let .crashed(signal, name, stderrTail):
            return "worker crashed with \(name) (signal \(signal))\(tail(stderrTail))"
        case let .exited(status, stderrTail): return "worker exited with status \(status) without replying\(tail(stderrTail))"
        case let .timedOut(after, _): return "worker did not answer within \(after) and was killed"
        }
    }
}

/// The time a worker call may take: `max(floor, factor * bestSeen)`, so a kernel that hangs is cut
/// off quickly once a good time is known, without cutting off slow first runs.
public struct TimeLimit: Codable, Sendable, Hashable {
    public var floor: Duration
    public var factor: Double

    public init(floor: Duration = .seconds(10), factor: Double = 20) {
        self.floor = floor
        self.factor = factor
    }

    /// The limit given the best time seen so far for comparable work (nil: none yet, the floor).
    public func limit(bestSeen: Duration?) -> Duration {
        guard let bestSeen else { return floor }
        return max(floor, bestSeen * factor)
    }
}

/// A worker process that runs requests in isolation from lowbit: a kernel that crashes, hangs or
/// corrupts memory takes down the worker, not the tuner.
///
/// The process is started lazily by the first `call`. When it crashes, exits or times out it is reaped
/// (killed with SIGKILL on timeout), and the next call starts a fresh one (`restarts` counts those).
/// The last ~4 KiB of its standard error are kept for messages. Not thread-safe: use one
/// `WorkerProcess` per thread (calls are strictly request-reply).
public final class WorkerProcess {
    public let executable: URL
    public let arguments: [String]
    public let environment: [String: String]?
    /// How many times a new process was started to replace one that crashed, exited or timed out.
    public private(set) var restarts: Int = 0
    /// The running worker's process ID, if one is running.
    public var processIdentifier: pid_t? { child?.pid }

    /// How long a worker that closed its output gets to exit before it is killed.
    var exitGrace: Duration = .seconds(2)
    private var child: ChildProcess?
    private var startedOnce = false
    private let logger: Logger
    private static let tailBytes = 4096

    /// - Parameters:
    ///   - executable: the worker program (e.g. the `lowbit` binary).
    ///   - arguments: its arguments (e.g. `["worker"]`), not including the program name.
    ///   - environment: the worker's environment; nil inherits this process's.
    public init(
        executable: URL, arguments: [String], environment: [String: String]? = nil,
        logger: Logger = Logger(label: "lowbit.measure.worker")
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.logger = logger
    }

    deinit {
        shutdown()
    }

    /// Sends `request` and waits at most `timeout` (writing the request included) for the reply.
    public func call(_ request: Data, timeout: Duration) -> WorkerOutcome {
        let deadline = ContinuousClock.now + timeout
        let worker: ChildProcess
        do {
            worker = try running()
        } catch {
            return .exited(status: 127, stderrTail: "cannot start \(executable.path): \(error)")
        }

        do {
            try Frame.write(request, to: worker.input, deadline: deadline)
            guard let frame = try Frame.read(from: worker.output, deadline: deadline) else {
                return ended(worker)
            }
            let reply: WorkerReply
            do {
                reply = try JSONDecoder().decode(WorkerReply.self, from: frame)
            } catch {
                return protocolError(worker, "malformed reply envelope: \(error)")
            }
            if let ok = reply.ok { return .reply(ok) }
            if let message = reply.error { return .failed(message) }
            return protocolError(worker, "reply envelope has neither 'ok' nor 'error'")
        } catch FrameError.timedOut {
            worker.kill(SIGKILL)
            worker.reap(deadline: .now + exitGrace)
            child = nil
            logger.notice(
                "worker timed out and was killed",
                metadata: ["pid": "\(worker.pid)", "timeout": "\(timeout)"])
            return .timedOut(after: timeout, stderrTail: worker.stderrTail.text(waitingUpTo: .milliseconds(200)))
        } catch FrameError.tooLarge(let length) {
            return protocolError(worker, "\(FrameError.tooLarge(length))")
        } catch {
            // Closed or truncated stream: the worker is gone or going.
            return ended(worker)
        }
    }

    /// Closes the worker's input and waits for it to exit (killing it after a few seconds).
    public func shutdown() {
        guard let worker = child else { return }
        child = nil
        worker.closeInput()
        worker.reap(deadline: .now + .seconds(5))
    }

    // MARK: Helpers

    private func running() throws -> ChildProcess {
        if let child { return child }
        let worker = try ChildProcess(
            executable: executable.path, arguments: arguments, environment: environment,
            tailBytes: Self.tailBytes)
        if startedOnce { restarts += 1 }
        startedOnce = true
        child = worker
        logger.debug("worker started", metadata: ["pid": "\(worker.pid)", "restarts": "\(restarts)"])
        return worker
    }

    /// The worker closed its output: reap it and say how it ended.
    private func ended(_ worker: ChildProcess) -> WorkerOutcome {
        child = nil
        worker.closeInput()
        let status = worker.reap(deadline: .now + exitGrace)
        let tail = worker.stderrTail.text(waitingUpTo: .milliseconds(500))
        let outcome: WorkerOutcome
        switch status {
        case .signaled(let signal):
            outcome = .crashed(signal: signal, name: signalName(signal), stderrTail: tail)
        case .exited(let code):
            outcome = .exited(status: code, stderrTail: tail)
        }
        logger.notice("worker ended", metadata: ["pid": "\(worker.pid)", "outcome": "\(outcome)"])
        return outcome
    }

    private func protocolError(_ worker: ChildProcess, _ message: String) -> WorkerOutcome {
        child = nil
        worker.kill(SIGKILL)
        worker.reap(deadline: .now + exitGrace)
        let tail = worker.stderrTail.text(waitingUpTo: .milliseconds(200))
        logger.warning("worker broke the protocol and was killed", metadata: ["pid": "\(worker.pid)", "error": "\(message)"])
        return .failed("worker protocol error: \(message)" + (tail.isEmpty ? "" : "; stderr: \(tail)"))
    }
}

/// The conventional name of a signal number ("SIGSEGV"), or "signal N" for unusual ones.
public func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
        SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        SIGSTKFLT: "SIGSTKFLT", SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP",
        SIGTTIN: "SIGTTIN", SIGTTOU: "SIGTTOU", SIGURG: "SIGURG", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ",
        SIGVTALRM: "SIGVTALRM", SIGPROF: "SIGPROF", SIGWINCH: "SIGWINCH", SIGIO: "SIGIO", SIGPWR: "SIGPWR",
        SIGSYS: "SIGSYS",
    ]
    return names[signal] ?? "signal \(signal)"
}
