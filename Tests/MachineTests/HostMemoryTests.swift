import Machine
import Testing

@Suite("Host memory")
struct HostMemoryTests {
    @Test func parsesMemAvailable() {
        let meminfo = """
            MemTotal:       24576000 kB
            MemFree:        19480276 kB
            MemAvailable:   24074012 kB
            Buffers:          123456 kB
            """
        #expect(HostMemory.availableBytes(meminfo: meminfo) == 24_074_012 * 1024)
        #expect(HostMemory.availableBytes(meminfo: "MemTotal: 1 kB\nMemFree: 1 kB") == nil)
        #expect(HostMemory.availableBytes(meminfo: "MemAvailable: lots kB") == nil)
        #expect(HostMemory.availableBytes(meminfo: "MemAvailable: 5 MB") == nil)
    }

    @Test func thisHostReportsSomeMemory() throws {
        let bytes = try #require(HostMemory.availableBytes(), "Linux has /proc/meminfo with MemAvailable")
        #expect(bytes > 1 << 20)
    }
}
