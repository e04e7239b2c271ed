import Foundation
import Testing

@testable import Machine

@Suite("Thread binding")
struct BindingTests {
    /// Runs `body` on a fresh thread so the test runner's own threads keep their binding.
    func onScratchThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        Thread {
            box.value = body()
            done.signal()
        }.start()
        done.wait()
        return box.value!
    }

    @Test func bindingReportsItsOutcome() throws {
        let hwloc = try HwlocTopology()
        let pu = hwloc.snapshot().pus.last!
        let outcome = onScratchThread { Result { try hwloc.bindCurrentThread(to: [pu]) } }
        let result = try outcome.get()
        #expect(result.requested == [pu])
        switch result.status {
        case .honoured:
            #expect(result.readBack == [pu])
            #expect(result.errno == 0)
        case .notReflected:
            #expect(result.readBack != nil && result.readBack != [pu])
        case .refused:
            #expect(result.errno != 0)
            #expect(!(result.message ?? "").isEmpty, "a refusal carries the OS's message")
        }
    }

    @Test func bindingToAMissingPUIsAClearError() throws {
        let hwloc = try HwlocTopology()
        let missing = (hwloc.snapshot().pus.max() ?? 0) + 1000
        #expect {
            try hwloc.bindCurrentThread(to: [missing])
        } throws: { error in
            "\(error)".contains("PU \(missing) does not exist")
        }
        #expect(throws: MachineError.self) { try hwloc.bindCurrentThread(to: []) }
    }
}

final class Box<T>: @unchecked Sendable { var value: T? }
