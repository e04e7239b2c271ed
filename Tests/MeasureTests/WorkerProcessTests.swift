import Foundation
import Glibc
import Testing

@testable import Measure

let shell = URL(fileURLWithPath: "/bin/sh")

/// A `/bin/sh` worker that reads requests of exactly `requestBytes` payload bytes and answers each
/// with the frame of `json`, until its input ends.
func cannedWorker(json: String, requestBytes: Int) -> WorkerProcess {
    let frame = Frame.encode(Data(json.utf8))
    let escaped = frame.map { byte -> String in
        let c = Character(UnicodeScalar(byte))
        if byte >= 0x20, byte < 0x7f, c != "\\", c != "%", c != "'" { return String(c) }
        return "\\" + String(byte, radix: 8)
    }.joined()
    let frameBytes = requestBytes + 4
    let script = "ulimit -c 0; while [ \"$(head -c \(frameBytes) | wc -c)\" -eq \(frameBytes) ]; do printf '\(escaped)'; done"
    return WorkerProcess(executable: shell, arguments: ["-c", script])
}

@Suite("Worker processes")
struct WorkerProcessTests {
    let request = Data("hello".utf8)

    @Test func repliesComeBackAndTheProcessIsReused() throws {
        let worker = cannedWorker(json: #"{"ok":"aGk="}"#, requestBytes: 5)
        #expect(worker.call(request, timeout: .seconds(10)) == .reply(Data("hi".utf8)))
        let pid = worker.processIdentifier
        #expect(pid != nil)
        #expect(worker.call(request, timeout: .seconds(10)) == .reply(Data("hi".utf8)))
        #expect(worker.processIdentifier == pid)
        #expect(worker.restarts == 0)
        worker.shutdown()
        #expect(worker.processIdentifier == nil)
        #expect(kill(pid!, 0) == -1 && errno == ESRCH, "the worker was reaped")
    }

    @Test func handlerErrorsAreReportedAsFailed() {
        let worker = cannedWorker(json: #"{"error":"kernel said no"}"#, requestBytes: 5)
        #expect(worker.call(request, timeout: .seconds(10)) == .failed("kernel said no"))
    }

    @Test(arguments: [("SEGV", SIGSEGV), ("ILL", SIGILL), ("BUS", SIGBUS), ("FPE", SIGFPE), ("ABRT", SIGABRT)])
    func crashesAreClassifiedBySignal(name: String, signal: Int32) {
        let worker = WorkerProcess(
            executable: shell, arguments: ["-c", "ulimit -c 0; echo about to die >&2; kill -\(name) $$"])
        let outcome = worker.call(request, timeout: .seconds(10))
        guard case let .crashed(got, gotName, tail) = outcome else {
            Issue.record("expected a crash, got \(outcome)")
            return
        }
        #expect(got == signal)
        #expect(gotName == "SIG\(name)")
        #expect(tail.contains("about to die"))
        #expect("\(outcome)".contains("SIG\(name)"))
    }

    @Test func exitWithoutReplyIsReportedWithStatusAndStderr() {
        let worker = WorkerProcess(executable: shell, arguments: ["-c", "echo giving up >&2; exit 3"])
        #expect(worker.call(request, timeout: .seconds(10)) == .exited(status: 3, stderrTail: "giving up\n"))
    }

    @Test func hangIsKilledAtTheTimeoutAndTheNextCallRestarts() {
        let worker = WorkerProcess(executable: shell, arguments: ["-c", "exec sleep 60"])
        let start = ContinuousClock.now
        #expect(timedOut(worker.call(request, timeout: .milliseconds(300)), after: .milliseconds(300)))
        #expect(start.duration(to: .now) < .seconds(5))
        #expect(worker.processIdentifier == nil)
        #expect(worker.restarts == 0)
        #expect(timedOut(worker.call(request, timeout: .milliseconds(100)), after: .milliseconds(100)))
        #expect(worker.restarts == 1)
    }

    @Test func aWorkerThatNeverReadsTimesOutWhileWriting() {
        let worker = WorkerProcess(executable: shell, arguments: ["-c", "exec sleep 60"])
        let huge = Data(repeating: 1, count: 32 << 20)
        #expect(timedOut(worker.call(huge, timeout: .milliseconds(300)), after: .milliseconds(300)))
    }

    @Test func crashesRestartTheWorker() {
        let worker = WorkerProcess(executable: shell, arguments: ["-c", "ulimit -c 0; kill -SEGV $$"])
        for expectedRestarts in 0..<3 {
            guard case .crashed = worker.call(request, timeout: .seconds(10)) else {
                Issue.record("expected a crash")
                return
            }
            #expect(worker.restarts == expectedRestarts)
        }
    }

    @Test func stderrTailIsBounded() {
        let script = """
            i=0; while [ $i -lt 1000 ]; do echo "line $i ......................................" >&2; i=$((i+1)); done
            echo LAST WORDS >&2; exit 1
            """
        let worker = WorkerProcess(executable: shell, arguments: ["-c", script])
        guard case let .exited(status, tail) = worker.call(request, timeout: .seconds(20)) else {
            Issue.record("expected an exit")
            return
        }
        #expect(status == 1)
        #expect(tail.utf8.count <= 4096)
        #expect(tail.utf8.count > 3000)
        #expect(tail.hasSuffix("LAST WORDS\n"))
    }

    @Test func garbageOnStdoutIsAProtocolError() {
        let worker = WorkerProcess(
            executable: shell, arguments: ["-c", "head -c 9 >/dev/null; printf 'garbage!'; exec sleep 30"])
        guard case let .failed(message) = worker.call(request, timeout: .seconds(10)) else {
            Issue.record("expected a protocol error")
            return
        }
        #expect(message.contains("protocol error"))
        #expect(worker.processIdentifier == nil, "a worker that broke the protocol is not reused")
    }

    @Test func missingExecutableIsReported() {
        let worker = WorkerProcess(executable: URL(fileURLWithPath: "/nonexistent/lowbit"), arguments: ["worker"])
        guard case let .exited(status, message) = worker.call(request, timeout: .seconds(5)) else {
            Issue.record("expected a start failure")
            return
        }
        #expect(status == 127)
        #expect(message.contains("/nonexistent/lowbit"))
    }

    @Test func environmentIsPassed() {
        let worker = WorkerProcess(
            executable: shell, arguments: ["-c", "echo \"value=$LOWBIT_TEST_VALUE\" >&2; exit 0"],
            environment: ["LOWBIT_TEST_VALUE": "42", "PATH": "/usr/bin:/bin"])
        #expect(worker.call(request, timeout: .seconds(10)) == .exited(status: 0, stderrTail: "value=42\n"))
    }

    @Test func timeLimitIsFloorOrFactorTimesBest() {
        let limit = TimeLimit()
        #expect(limit.floor == .seconds(10))
        #expect(limit.factor == 20)
        #expect(limit.limit(bestSeen: nil) == .seconds(10))
        #expect(limit.limit(bestSeen: .milliseconds(1)) == .seconds(10))
        #expect(limit.limit(bestSeen: .seconds(2)) == .seconds(40))
        #expect(TimeLimit(floor: .milliseconds(50), factor: 3).limit(bestSeen: .milliseconds(100)) == .milliseconds(300))
    }

    @Test func signalNames() {
        #expect(signalName(SIGSEGV) == "SIGSEGV")
        #expect(signalName(SIGKILL) == "SIGKILL")
        #expect(signalName(60) == "signal 60")
    }
}

/// Whether `outcome` is a time-out after `duration` (whatever the worker printed).
func timedOut(_ outcome: WorkerOutcome, after duration: Duration) -> Bool {
    if case .timedOut(let after, _) = outcome { return after == duration }
    return false
}
