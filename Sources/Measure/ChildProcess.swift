import Foundation
import Glibc

/// One spawned worker process and its three descriptors. All `posix_spawn` and `waitpid` work of the
/// module lives here.
///
/// The three standard streams are Unix socket pairs used one way each, like pipes: writing to a dead
/// worker then gives `EPIPE` (sent with `MSG_NOSIGNAL`), never `SIGPIPE`, without touching the
/// parent's signal dispositions. Standard error is drained continuously by a background thread into a bounded tail.
final class ChildProcess {
    let pid: pid_t
    /// Parent's end of the child's standard input (non-blocking).
    private(set) var input: Int32
    /// Parent's end of the child's standard output.
    private(set) var output: Int32
    let stderrTail: StderrTail
    private var reaped: WaitStatus?

    /// How a reaped child ended.
    enum WaitStatus: Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    /// Starts `executable` with `arguments`; `environment` nil means this process's environment.
    /// - Throws: a message with the OS's reason when the program cannot be started.
    init(executable: String, arguments: [String], environment: [String: String]?, tailBytes: Int) throws {
        // Socket pairs rather than pipes: they can be created close-on-exec atomically (pipe2 is not
        // importable), so a process spawned concurrently by another thread never inherits them.
        var created: [Int32] = []
        func pair() throws -> [Int32] {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0
            else {
                let code = errno
                created.forEach { close($0) }
                throw SpawnError(call: "socketpair", code: code)
            }
            created += fds
            return fds
        }
        let stdinPair = try pair()
        let stdoutPipe = try pair()
        let stderrPipe = try pair()
        // Each stream flows one way.
        shutdown(stdinPair[0], Int32(SHUT_RD))
        shutdown(stdoutPipe[0], Int32(SHUT_WR))
        shutdown(stderrPipe[0], Int32(SHUT_WR))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPair[1], 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = CStringArray([executable] + arguments)
        let env = CStringArray(
            (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }.sorted())
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv.pointers, env.pointers)
        close(stdinPair[1])
        close(stdoutPipe[1])
        close(stderrPipe[1])
        guard rc == 0 else {
            close(stdinPair[0])
            close(stdoutPipe[0])
            close(stderrPipe[0])
            throw SpawnError(call: "posix_spawn \(executable)", code: rc)
        }
        _ = fcntl(stdinPair[0], F_SETFL, fcntl(stdinPair[0], F_GETFL) | O_NONBLOCK)
        pid = child
        input = stdinPair[0]
        output = stdoutPipe[0]
        stderrTail = StderrTail(fd: stderrPipe[0], capacity: tailBytes)
    }

    deinit {
        if reaped == nil {
            Glibc.kill(pid, SIGKILL)
            _ = waitBlocking()
        }
        closeInput()
        if output >= 0 { close(output) }
    }

    /// Closes standard input: a worker sees end of input and exits.
    func closeInput() {
        if input >= 0 {
            close(input)
            input = -1
        }
    }

    func kill(_ signal: Int32) {
        if reaped == nil { _ = Glibc.kill(pid, signal) }
    }

    /// Waits for the child to end until `deadline`; if it has not, kills it with SIGKILL and waits.
    @discardableResult
    func reap(deadline: ContinuousClock.Instant) -> WaitStatus {
        if let reaped { return reaped }
        var pause: Duration = .microseconds(200)
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return record(status) }
            if r < 0, errno != EINTR { return record(status: .exited(-1)) }
            Thread.sleep(forTimeInterval: pause / .seconds(1))
            pause = min(pause * 2, .milliseconds(20))
        }
        kill(SIGKILL)
        return waitBlocking()
    }

    private func waitBlocking() -> WaitStatus {
        if let reaped { return reaped }
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { return record(status) }
            if r < 0, errno != EINTR { return record(status: .exited(-1)) }
        }
    }

    private func record(_ raw: Int32) -> WaitStatus {
        // The WIFEXITED / WTERMSIG macros, which Swift cannot import.
        let signal = raw & 0x7f
        return record(status: signal == 0 ? .exited((raw >> 8) & 0xff) : .signaled(signal))
    }

    private func record(status: WaitStatus) -> WaitStatus {
        reaped = status
        return status
    }
}

/// A failed system call while starting a worker.
struct SpawnError: Error, CustomStringConvertible {
    var call: String
    var code: Int32
    var description: String { "\(call) failed: \(String(cString: strerror(code))) (errno \(code))" }
}

/// A NULL-terminated `char *[]` for `posix_spawn`, freed with this object.
private final class CStringArray {
    let pointers: [UnsafeMutablePointer<CChar>?]
    init(_ strings: [String]) { pointers = strings.map { strdup($0) } + [nil] }
    deinit { pointers.forEach { free($0) } }
}

/// Drains a descriptor on a background thread, keeping the last `capacity` bytes.
final class StderrTail: @unchecked Sendable {
    private let lock = NSCondition()
    private var bytes: [UInt8] = []  // guarded by lock
    private var finished = false  // guarded by lock
    private let capacity: Int

    init(fd: Int32, capacity: Int) {
        self.capacity = capacity
        let thread = Thread { [self] in drain(fd) }
        thread.name = "lowbit-worker-stderr"
        thread.start()
    }

    private func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            lock.lock()
            bytes.append(contentsOf: buffer[0..<n])
            if bytes.count > capacity { bytes.removeFirst(bytes.count - capacity) }
            lock.unlock()
        }
        close(fd)
        lock.lock()
        finished = true
        lock.broadcast()
        lock.unlock()
    }

    /// The tail collected so far, after waiting up to `wait` for the writer to close its end (so that
    /// a crashed worker's last words are included). Invalid UTF-8 is repaired.
    func text(waitingUpTo wait: Duration = .zero) -> String {
        let until = Date(timeIntervalSinceNow: wait / .seconds(1))
        lock.lock()
        while !finished, lock.wait(until: until) {}
        let tail = bytes
        lock.unlock()
        return String(decoding: tail, as: UTF8.self)
    }
}
