import CCPUFeatures
import Foundation

/// Instruction-set features lowbit's kernels care about.
public enum ISAFeature: String, Codable, Sendable, CaseIterable, Comparable {
    // x86-64
    case sse42 = "sse4.2"
    case avx, avx2, fma, f16c, bmi2
    case avx512f, avx512bw, avx512vl
    case avx512vnni = "avx512-vnni"
    case avx512bf16 = "avx512-bf16"
    case avxvnni = "avx-vnni"
    case amxTile = "amx-tile"
    case amxInt8 = "amx-int8"
    // aarch64
    case asimd, dotprod, i8mm, sve, bf16

    public var architecture: CPUArchitecture {
        switch self {
        case .asimd, .dotprod, .i8mm, .sve, .bf16: return .aarch64
        default: return .x86_64
        }
    }

    public static func < (a: ISAFeature, b: ISAFeature) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

public enum CPUArchitecture: String, Codable, Sendable {
    case x86_64, aarch64, other

    public static var current: CPUArchitecture {
        #if arch(x86_64)
        return .x86_64
        #elseif arch(arm64)
        return .aarch64
        #else
        return .other
        #endif
    }
}

/// What the processor offers and what the OS lets a program use.
public struct ISAFeatures: Codable, Sendable, Equatable {
    public var architecture: CPUArchitecture
    /// Features the CPU reports and the OS has enabled: safe to execute.
    public var usable: Set<ISAFeature>
    /// Features the CPU reports but the OS does not save the register state for (XCR0), so using them
    /// would fault. Empty on aarch64 (hwcaps already reflect the kernel's view).
    public var disabledByOS: Set<ISAFeature>
    /// Features the machine has that the user hid (`LOWBIT_HIDE_ISA`), with the ones that need them:
    /// lowbit then behaves as on a machine without them (targets, tuning, fingerprint, engine).
    public var hiddenByUser: Set<ISAFeature> = []

    public init(architecture: CPUArchitecture, usable: Set<ISAFeature>, disabledByOS: Set<ISAFeature> = []) {
        self.architecture = architecture
        self.usable = usable
        self.disabledByOS = disabledByOS
    }

    private enum CodingKeys: String, CodingKey { case architecture, usable, disabledByOS, hiddenByUser }

    /// Descriptions stored before `hiddenByUser` existed decode with nothing hidden.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decode(CPUArchitecture.self, forKey: .architecture)
        usable = try c.decode(Set<ISAFeature>.self, forKey: .usable)
        disabledByOS = try c.decode(Set<ISAFeature>.self, forKey: .disabledByOS)
        hiddenByUser = try c.decodeIfPresent(Set<ISAFeature>.self, forKey: .hiddenByUser) ?? []
    }

    /// Each set as a sorted list, so that a description (and an export holding it) encodes the same
    /// bytes every time.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        try c.encode(usable.sorted(), forKey: .usable)
        try c.encode(disabledByOS.sorted(), forKey: .disabledByOS)
        try c.encode(hiddenByUser.sorted(), forKey: .hiddenByUser)
    }

    /// The environment variable naming features to hide, comma-separated (e.g. `avx512f,avx-vnni` to
    /// run as an AVX2 machine would).
    public static let hideVariable = "LOWBIT_HIDE_ISA"

    /// Features that need `feature`: hiding it hides them too.
    static func dependents(of feature: ISAFeature) -> Set<ISAFeature> {
        let avx512: Set<ISAFeature> = [.avx512f, .avx512bw, .avx512vl, .avx512vnni, .avx512bf16, .amxTile, .amxInt8]
        switch feature {
        case .avx: return avx512.union([.avx2, .fma, .f16c, .avxvnni])
        case .avx2: return avx512.union([.avxvnni])
        case .avx512f: return avx512
        case .amxTile: return [.amxInt8]
        case .asimd: return [.dotprod, .i8mm, .sve, .bf16]
        default: return []
        }
    }

    /// These features without the ones `list` names (comma-separated feature names as `lowbit
    /// machine` prints them) and their dependents. Throws on a name that is not a feature.
    public func hiding(_ list: String) throws -> ISAFeatures {
        var hidden: Set<ISAFeature> = []
        for item in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            guard let feature = ISAFeature(rawValue: item) else {
                throw MachineError.invalidISAMask(
                    "\(Self.hideVariable): '\(item)' is not an ISA feature; valid: \(ISAFeature.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            hidden.insert(feature)
            hidden.formUnion(Self.dependents(of: feature))
        }
        var masked = self
        masked.hiddenByUser = usable.intersection(hidden)
        masked.usable.subtract(hidden)
        return masked
    }

    public func has(_ feature: ISAFeature) -> Bool { usable.contains(feature) }

    /// The features of this architecture the machine does not offer.
    public var absent: [ISAFeature] {
        ISAFeature.allCases.filter { $0.architecture == architecture && !usable.contains($0) }
    }

    /// Probes the machine this process runs on, less what `LOWBIT_HIDE_ISA` hides.
    public static func detect() throws -> ISAFeatures {
        let found = probe()
        guard let list = ProcessInfo.processInfo.environment[hideVariable] else { return found }
        return try found.hiding(list)
    }

    /// What the processor and OS offer, nothing hidden.
    public static func probe() -> ISAFeatures {
        switch CPUArchitecture.current {
        case .x86_64: return detectX86()
        case .aarch64: return detectArm()
        case .other: return ISAFeatures(architecture: .other, usable: [])
        }
    }

    // MARK: x86-64: cpuid + xgetbv

    struct CPUIDRegisters { var eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0 }

    static func cpuid(_ leaf: UInt32, _ subleaf: UInt32 = 0) -> CPUIDRegisters {
        var r = CPUIDRegisters()
        _ = lowbit_cpuid(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)
        return r
    }

    /// Decodes cpuid leaves 1, 7.0, 7.1 and XCR0 into usable and OS-disabled features.
    /// Separated from `detect` so tests can feed it register values of other machines.
    static func decodeX86(
        leaf1: CPUIDRegisters, leaf7: CPUIDRegisters, leaf7s1: CPUIDRegisters, xcr0: UInt64
    ) -> ISAFeatures {
        func bit(_ value: UInt32, _ n: UInt32) -> Bool { value & (1 << n) != 0 }
        // Register state the OS saves: SSE (bit 1) + AVX (bit 2); opmask/ZMM (5, 6, 7); AMX tiles (17, 18).
        let osAVX = xcr0 & 0b110 == 0b110
        let osAVX512 = osAVX && xcr0 & 0b1110_0000 == 0b1110_0000
        let osAMX = xcr0 & (0b11 << 17) == (0b11 << 17)

        var cpu: [(ISAFeature, Bool, Bool)] = []  // feature, CPU reports it, OS state enabled
        cpu.append((.sse42, bit(leaf1.ecx, 20), true))
        cpu.append((.avx, bit(leaf1.ecx, 28), osAVX))
        cpu.append((.fma, bit(leaf1.ecx, 12), osAVX))
        cpu.append((.f16c, bit(leaf1.ecx, 29), osAVX))
        cpu.append((.avx2, bit(leaf7.ebx, 5), osAVX))
        cpu.append((.bmi2, bit(leaf7.ebx, 8), true))
        cpu.append((.avx512f, bit(leaf7.ebx, 16), osAVX512))
        cpu.append((.avx512bw, bit(leaf7.ebx, 30), osAVX512))
        cpu.append((.avx512vl, bit(leaf7.ebx, 31), osAVX512))
        cpu.append((.avx512vnni, bit(leaf7.ecx, 11), osAVX512))
        cpu.append((.avx512bf16, bit(leaf7s1.eax, 5), osAVX512))
        cpu.append((.avxvnni, bit(leaf7s1.eax, 4), osAVX))
        cpu.append((.amxTile, bit(leaf7.edx, 24), osAMX))
        cpu.append((.amxInt8, bit(leaf7.edx, 25), osAMX))

        var usable: Set<ISAFeature> = []
        var disabled: Set<ISAFeature> = []
        for (feature, reported, enabled) in cpu where reported {
            if enabled { usable.insert(feature) } else { disabled.insert(feature) }
        }
        return ISAFeatures(architecture: .x86_64, usable: usable, disabledByOS: disabled)
    }

    private static func detectX86() -> ISAFeatures {
        let maxLeaf = cpuid(0).eax
        let leaf7 = maxLeaf >= 7 ? cpuid(7, 0) : CPUIDRegisters()
        let leaf7s1 = maxLeaf >= 7 && leaf7.eax >= 1 ? cpuid(7, 1) : CPUIDRegisters()
        return decodeX86(leaf1: cpuid(1), leaf7: leaf7, leaf7s1: leaf7s1, xcr0: lowbit_xgetbv0())
    }

    /// Vendor string, brand string and family/model/stepping from cpuid (x86 only).
    static func x86Identity() -> (vendor: String, brand: String, family: Int, model: Int, stepping: Int)? {
        guard CPUArchitecture.current == .x86_64 else { return nil }
        let leaf0 = cpuid(0)
        let vendor = ascii([leaf0.ebx, leaf0.edx, leaf0.ecx])
        var brand = ""
        if cpuid(0x8000_0000).eax >= 0x8000_0004 {
            brand = (UInt32(0x8000_0002)...0x8000_0004).map { leaf -> String in
                let r = cpuid(leaf)
                return ascii([r.eax, r.ebx, r.ecx, r.edx])
            }.joined()
        }
        let eax = cpuid(1).eax
        let baseFamily = Int((eax >> 8) & 0xf)
        let baseModel = Int((eax >> 4) & 0xf)
        let family = baseFamily == 0xf ? baseFamily + Int((eax >> 20) & 0xff) : baseFamily
        let model = (baseFamily == 0x6 || baseFamily == 0xf) ? (Int((eax >> 16) & 0xf) << 4) + baseModel : baseModel
        return (vendor, brand.trimmingCharacters(in: .whitespaces), family, model, Int(eax & 0xf))
    }

    private static func ascii(_ words: [UInt32]) -> String {
        var bytes: [UInt8] = []
        for w in words { for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8((w >> UInt32(shift)) & 0xff)) } }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    // MARK: aarch64: hwcaps

    private static func detectArm() -> ISAFeatures {
        let hwcap = lowbit_hwcap()
        let hwcap2 = lowbit_hwcap2()
        var usable: Set<ISAFeature> = []
        if hwcap & lowbit_hwcap_asimd() != 0 { usable.insert(.asimd) }
        if hwcap & lowbit_hwcap_asimddp() != 0 { usable.insert(.dotprod) }
        if hwcap & lowbit_hwcap_sve() != 0 { usable.insert(.sve) }
        if hwcap2 & lowbit_hwcap2_i8mm() != 0 { usable.insert(.i8mm) }
        if hwcap2 & lowbit_hwcap2_bf16() != 0 { usable.insert(.bf16) }
        return ISAFeatures(architecture: .aarch64, usable: usable)
    }
}
