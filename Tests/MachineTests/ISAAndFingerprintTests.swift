import Foundation
import Testing

@testable import Machine

@Suite("ISA features")
struct ISATests {
    typealias Regs = ISAFeatures.CPUIDRegisters

    @Test func detectionIsConsistentOnThisMachine() throws {
        let isa = try ISAFeatures.detect()
        #expect(isa.architecture == CPUArchitecture.current)
        if isa.has(.avx2) { #expect(isa.has(.avx)) }
        if isa.has(.avx512vnni) { #expect(isa.has(.avx512f)) }
        #expect(isa.usable.allSatisfy { $0.architecture == isa.architecture })
        #expect(isa.usable.isDisjoint(with: isa.disabledByOS))
        #if arch(x86_64)
        #expect(isa.has(.sse42), "every x86-64 machine lowbit targets has SSE4.2")
        #endif
    }

    @Test func hidingAFeatureHidesWhatNeedsIt() throws {
        let full = ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma, .avx512f, .avx512bw, .avx512vl, .avx512vnni, .avxvnni])
        let avx2 = try full.hiding("avx512f, avx-vnni")
        #expect(avx2.usable == [.sse42, .avx, .avx2, .fma])
        #expect(avx2.hiddenByUser == [.avx512f, .avx512bw, .avx512vl, .avx512vnni, .avxvnni], "only what the machine had")
        #expect(try full.hiding("avx").usable == [.sse42])
        #expect(try full.hiding("").usable == full.usable)
        #expect { try full.hiding("avx512") } throws: { "\($0)".contains("LOWBIT_HIDE_ISA: 'avx512' is not an ISA feature; valid: sse4.2") }
        // Stored descriptions from before the field decode with nothing hidden.
        let old = #"{"architecture":"x86_64","usable":["avx2"],"disabledByOS":[]}"#
        #expect(try JSONDecoder().decode(ISAFeatures.self, from: Data(old.utf8)).hiddenByUser.isEmpty)
    }

    /// Feature sets encode as sorted lists: the same description gives the same bytes in every process
    /// (a Swift Set's order is not), so a re-export of an unchanged database is unchanged.
    @Test func featureSetsEncodeSorted() throws {
        var isa = ISAFeatures(architecture: .x86_64, usable: [.fma, .avx2, .sse42, .bmi2, .avx, .f16c], disabledByOS: [.avx512vnni, .avx512f])
        isa.hiddenByUser = [.avxvnni, .amxTile]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(isa), as: UTF8.self)
        #expect(text.contains(#""usable":["sse4.2","avx","avx2","fma","f16c","bmi2"]"#), "\(text)")
        #expect(text.contains(#""disabledByOS":["avx512f","avx512-vnni"]"#), "\(text)")
        #expect(try JSONDecoder().decode(ISAFeatures.self, from: Data(text.utf8)) == isa)
    }

    @Test func decodesAVX2MachineWithoutAVX512() {
        // Leaf 1: SSE4.2 (20), FMA (12), OSXSAVE (27), AVX (28), F16C (29); leaf 7: AVX2 (5), BMI2 (8).
        let leaf1 = Regs(ecx: 1 << 20 | 1 << 12 | 1 << 27 | 1 << 28 | 1 << 29)
        let leaf7 = Regs(ebx: 1 << 5 | 1 << 8)
        let isa = ISAFeatures.decodeX86(leaf1: leaf1, leaf7: leaf7, leaf7s1: Regs(), xcr0: 0b111)
        #expect(isa.usable == [.sse42, .fma, .avx, .f16c, .avx2, .bmi2])
        #expect(isa.absent.contains(.avx512f))
        #expect(isa.disabledByOS.isEmpty)
    }

    @Test func avx512WithoutOSStateIsNotUsable() {
        let leaf1 = Regs(ecx: 1 << 27 | 1 << 28)
        let leaf7 = Regs(ebx: 1 << 16 | 1 << 30 | 1 << 31, ecx: 1 << 11)
        // XCR0 enables SSE and AVX state but not opmask/ZMM.
        let isa = ISAFeatures.decodeX86(leaf1: leaf1, leaf7: leaf7, leaf7s1: Regs(), xcr0: 0b111)
        #expect(isa.has(.avx))
        #expect(!isa.has(.avx512f))
        #expect(isa.disabledByOS == [.avx512f, .avx512bw, .avx512vl, .avx512vnni])
        // With the state enabled they become usable.
        let enabled = ISAFeatures.decodeX86(leaf1: leaf1, leaf7: leaf7, leaf7s1: Regs(), xcr0: 0b1110_0111)
        #expect(enabled.has(.avx512vnni) && enabled.disabledByOS.isEmpty)
    }

    @Test func decodesAVXVNNIAndAMX() {
        let leaf1 = Regs(ecx: 1 << 27 | 1 << 28)
        let leaf7 = Regs(edx: 1 << 24 | 1 << 25)
        let leaf7s1 = Regs(eax: 1 << 4)
        let withAMX = ISAFeatures.decodeX86(leaf1: leaf1, leaf7: leaf7, leaf7s1: leaf7s1, xcr0: 0b111 | 0b11 << 17)
        #expect(withAMX.has(.avxvnni) && withAMX.has(.amxTile) && withAMX.has(.amxInt8))
        let noAMXState = ISAFeatures.decodeX86(leaf1: leaf1, leaf7: leaf7, leaf7s1: leaf7s1, xcr0: 0b111)
        #expect(noAMXState.disabledByOS == [.amxTile, .amxInt8])
    }
}

@Suite("Machine fingerprint")
struct FingerprintTests {
    let cpu = CPUIdentity(vendor: "AuthenticAMD", name: "AMD EPYC 7B13", family: 25, model: 1, stepping: 0)
    let isa = ISAFeatures(architecture: .x86_64, usable: [.sse42, .avx, .avx2, .fma])

    func topology(l2: UInt64 = 512 << 10) -> Topology {
        let cache = { (level: Int, kind: Topology.CacheKind, size: UInt64, index: Int, pus: [Int]) in
            Topology.Cache(level: level, kind: kind, index: index, sizeBytes: size, lineSize: 64, associativity: 8, pus: pus)
        }
        return Topology(
            packages: [.init(index: 0, vendor: "AuthenticAMD", model: "AMD EPYC 7B13", pus: [0, 1])],
            numaNodes: [.init(index: 0, memoryBytes: 24 << 30, pus: [0, 1])],
            cores: [.init(index: 0, pus: [0]), .init(index: 1, pus: [1])], pus: [0, 1],
            caches: [
                cache(1, .data, 32 << 10, 0, [0]), cache(1, .data, 32 << 10, 1, [1]),
                cache(2, .unified, l2, 0, [0]), cache(2, .unified, l2, 1, [1]),
                cache(3, .unified, 32 << 20, 0, [0, 1]),
            ],
            hwlocAPIVersion: "2.8.0")
    }

    /// A hidden view of the machine is another fingerprint: its tuning records never mix with the full machine's.
    @Test func hiddenFeaturesChangeTheFingerprint() throws {
        let hidden = try isa.hiding("fma")
        #expect(hidden.usable == [.sse42, .avx, .avx2])
        #expect(MachineFingerprint(cpu: cpu, isa: isa, topology: topology()).id != MachineFingerprint(cpu: cpu, isa: hidden, topology: topology()).id)
    }

    @Test func sameMachineSameFingerprint() throws {
        let a = MachineFingerprint(cpu: cpu, isa: isa, topology: topology())
        var moreMemory = topology()
        moreMemory.numaNodes[0].memoryBytes *= 2  // memory size is not part of it
        let b = MachineFingerprint(cpu: cpu, isa: isa, topology: moreMemory)
        #expect(a == b)
        #expect(a.id.hasPrefix("x86_64-amd-2c-"))
        #expect(a.id.count == "x86_64-amd-2c-".count + 16)
    }

    @Test func differentCacheOrFeaturesChangeIt() {
        let base = MachineFingerprint(cpu: cpu, isa: isa, topology: topology())
        let biggerL2 = MachineFingerprint(cpu: cpu, isa: isa, topology: topology(l2: 1 << 20))
        var withVNNI = isa
        withVNNI.usable.insert(.avxvnni)
        let moreISA = MachineFingerprint(cpu: cpu, isa: withVNNI, topology: topology())
        #expect(base != biggerL2)
        #expect(base != moreISA)
        #expect(biggerL2 != moreISA)
    }

    @Test func thisMachineIsStableAcrossLoads() throws {
        let first = try MachineModel().description.fingerprint
        let second = try MachineModel().description.fingerprint
        #expect(first == second)
    }

    @Test func hashIsFNV1a() {
        // Reference values of 64-bit FNV-1a.
        #expect(MachineFingerprint.fnv1a64("") == 0xcbf2_9ce4_8422_2325)
        #expect(MachineFingerprint.fnv1a64("a") == 0xaf63_dc4c_8601_ec8c)
    }
}
