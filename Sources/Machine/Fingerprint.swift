/// A stable identifier of a machine as far as kernel performance goes.
///
/// It hashes, in a fixed text form: architecture; CPU vendor, family/model/stepping and model name;
/// the usable ISA features; the number of packages, cores and PUs; and every cache level's kind,
/// size, line size, associativity and sharing. It leaves out what changes between boots without
/// changing which kernel is fastest: memory size, frequency, hostname, PU numbering.
public struct MachineFingerprint: Codable, Sendable, Hashable, CustomStringConvertible {
    /// The canonical text that is hashed (kept so a person can see why two fingerprints differ).
    public var canonical: String
    /// `<arch>-<vendor>-<cores>c-<16 hex digits>`, e.g. `x86_64-intel-2c-5f1c0a9e3b7d2264`.
    public var id: String

    public var description: String { id }

    public init(cpu: CPUIdentity, isa: ISAFeatures, topology: Topology) {
        var lines: [String] = []
        lines.append("arch=\(isa.architecture.rawValue)")
        lines.append("vendor=\(cpu.vendor)")
        lines.append("model=\(cpu.family).\(cpu.model).\(cpu.stepping) \(cpu.name)")
        lines.append("isa=\(isa.usable.sorted().map(\.rawValue).joined(separator: ","))")
        lines.append("packages=\(topology.packages.count) cores=\(topology.cores.count) pus=\(topology.pus.count)")
        for level in topology.cacheLevels {
            lines.append(
                "\(level.name)=\(level.sizeBytes)B line=\(level.lineSize) ways=\(level.associativity) "
                    + "instances=\(level.instances) shared=\(level.pusPerInstance)")
        }
        canonical = lines.joined(separator: "\n")
        let hash = Self.fnv1a64(canonical)
        let hex = String(hash, radix: 16)
        let vendor = Self.shortVendor(cpu.vendor)
        id = "\(isa.architecture.rawValue)-\(vendor)-\(topology.cores.count)c-"
            + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// FNV-1a, 64-bit: stable across runs, processes and Swift versions (unlike `Hasher`).
    static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    static func shortVendor(_ vendor: String) -> String {
        switch vendor {
        case "GenuineIntel": return "intel"
        case "AuthenticAMD": return "amd"
        default:
            let slug = vendor.lowercased().filter { $0.isLetter || $0.isNumber }
            return slug.isEmpty ? "unknown" : String(slug.prefix(12))
        }
    }
}

/// Who made the CPU and which model it is.
public struct CPUIdentity: Codable, Sendable, Equatable {
    public var vendor: String
    public var name: String
    public var family: Int
    public var model: Int
    public var stepping: Int

    public init(vendor: String, name: String, family: Int, model: Int, stepping: Int) {
        self.vendor = vendor
        self.name = name
        self.family = family
        self.model = model
        self.stepping = stepping
    }

    /// From cpuid on x86; from hwloc's package information elsewhere.
    static func detect(topology: Topology) -> CPUIdentity {
        if let id = ISAFeatures.x86Identity() {
            return CPUIdentity(vendor: id.vendor, name: id.brand, family: id.family, model: id.model, stepping: id.stepping)
        }
        let package = topology.packages.first
        return CPUIdentity(
            vendor: package?.vendor ?? "unknown", name: package?.model ?? "unknown", family: 0, model: 0, stepping: 0)
    }
}
