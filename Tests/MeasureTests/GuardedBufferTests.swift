import Foundation
import Glibc
import Testing

@testable import Measure

@Suite("Guarded buffers")
struct GuardedBufferTests {
    @Test func fillPoisonAndReadBack() throws {
        let buffer = try GuardedBuffer(count: 1000, of: Float.self)
        #expect(buffer.byteCount == 4000)
        #expect(Int(bitPattern: buffer.pointer) % MemoryLayout<Float>.alignment == 0)
        #expect(buffer.array(of: Float.self).allSatisfy { $0 == 0 })

        let values = (0..<1000).map { Float($0) * 0.5 }
        buffer.copy(from: values)
        #expect(buffer.array(of: Float.self) == values)
        buffer.buffer(of: Float.self)[999] = -1
        #expect(buffer.array(of: Float.self).last == -1)

        buffer.poison(with: GuardedBuffer.float32Poison)
        #expect(buffer.array(of: Float.self).allSatisfy { $0.isNaN && $0.bitPattern == 0x7FC0_DEAD })
        #expect(buffer.canariesIntact())

        buffer.poison(with: UInt8(0xAB))
        #expect(buffer.array(of: UInt8.self).allSatisfy { $0 == 0xAB })
        #expect(buffer.canariesIntact())
    }

    @Test func usableRegionEndsAtAPageBoundary() throws {
        let page = GuardedBuffer.pageSize
        for count in [1, 3, 1000, 4096, 5000] {
            let buffer = try GuardedBuffer(byteCount: count)
            #expect((Int(bitPattern: buffer.pointer) + count) % page == 0, "\(count) bytes")
        }
        let aligned = try GuardedBuffer(byteCount: 100, alignment: 64)
        #expect(Int(bitPattern: aligned.pointer) % 64 == 0)
    }

    @Test func writingIntoTheFrontCanaryIsDetected() throws {
        let buffer = try GuardedBuffer(count: 16, of: Int32.self)
        #expect(buffer.canariesIntact())
        for offset in [1, 8, GuardedBuffer.minimumCanaryBytes] {
            let address = buffer.pointer - offset
            address.storeBytes(of: ~address.load(as: UInt8.self), as: UInt8.self)
            #expect(!buffer.canariesIntact(), "a write \(offset) bytes before the start")
            buffer.resetCanaries()
            #expect(buffer.canariesIntact())
        }
    }

    @Test func writingIntoTheTailSlackIsDetected() throws {
        let buffer = try GuardedBuffer(byteCount: 100, alignment: 64)  // slack before the guard page
        let address = buffer.pointer + buffer.byteCount
        address.storeBytes(of: ~address.load(as: UInt8.self), as: UInt8.self)
        #expect(!buffer.canariesIntact())
    }

    @Test func emptyBufferIsFine() throws {
        let buffer = try GuardedBuffer(byteCount: 0)
        #expect(buffer.byteCount == 0)
        #expect(buffer.canariesIntact())
        buffer.poison(with: UInt8(1))
    }

    /// Writes one byte at `offset` from the start in a forked child; returns the signal that killed
    /// it, or 0 when it exited normally.
    func signalFromWrite(_ buffer: GuardedBuffer, at offset: Int) -> Int32 {
        let target = buffer.pointer + offset
        let pid = fork()
        if pid == 0 {
            var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
            _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
            signal(SIGSEGV, SIG_DFL)  // not the Swift runtime's backtracer
            target.storeBytes(of: 1, as: UInt8.self)
            _exit(0)
        }
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
        return status & 0x7f
    }

    @Test func writesPastEitherEndFault() throws {
        let buffer = try GuardedBuffer(count: 1000, of: Float.self)
        #expect(signalFromWrite(buffer, at: buffer.byteCount - 1) == 0, "the last byte is writable")
        #expect(signalFromWrite(buffer, at: 0) == 0)
        #expect(signalFromWrite(buffer, at: buffer.byteCount) == SIGSEGV, "one past the end hits the guard page")
        // Below the front canary is the lower guard page.
        let belowCanary = -(GuardedBuffer.minimumCanaryBytes + GuardedBuffer.pageSize)
        #expect(signalFromWrite(buffer, at: belowCanary) == SIGSEGV)
    }
}
