import Machine

/// A code path of a kernel family: which instructions it uses and how to compile it.
/// Never `-march=native`: each target names its own flags.
public enum ISATarget: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    case portable
    case avx2
    case avx512vnni = "avx512-vnni"
    case avxvnni = "avx-vnni"
    case neonDotprod = "neon-dotprod"

    public var description: String { rawValue }

    /// The architecture the code is for (`nil`: any).
    public var architecture: CPUArchitecture? {
        switch self {
        case .portable: return nil
        case .avx2, .avx512vnni, .avxvnni: return .x86_64
        case .neonDotprod: return .aarch64
        }
    }

    /// Compiler flags that enable exactly the instructions this target uses.
    public var compilerFlags: [String] {
        switch self {
        case .portable: return []
        case .avx2: return ["-mavx2", "-mfma"]
        case .avx512vnni: return ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"]
        case .avxvnni: return ["-mavx2", "-mfma", "-mavxvnni"]
        case .neonDotprod: return ["-march=armv8.2-a+dotprod"]
        }
    }

    /// Machine features the code needs at run time.
    public var requiredFeatures: Set<ISAFeature> {
        switch self {
        case .portable: return []
        case .avx2: return [.avx2, .fma]
        case .avx512vnni: return [.avx512f, .avx512bw, .avx512vl, .avx512vnni]
        case .avxvnni: return [.avx2, .avxvnni]
        case .neonDotprod: return [.asimd, .dotprod]
        }
    }

    /// Whether this machine can execute the target's code.
    public func runs(on isa: ISAFeatures) -> Bool {
        (architecture == nil || architecture == isa.architecture) && requiredFeatures.isSubset(of: isa.usable)
    }

    /// Whether code for this target compiles on a host of `arch` without a cross toolchain.
    public func compilesNatively(on arch: CPUArchitecture) -> Bool { architecture == nil || architecture == arch }

    /// Why the target cannot run here, for messages ("needs avx-vnni, which this machine lacks").
    public func missingFeatures(on isa: ISAFeatures) -> String? {
        if let architecture, architecture != isa.architecture {
            return "\(rawValue) is \(architecture.rawValue) code and this machine is \(isa.architecture.rawValue)"
        }
        let missing = requiredFeatures.subtracting(isa.usable)
        guard !missing.isEmpty else { return nil }
        return "\(rawValue) needs \(missing.sorted().map(\.rawValue).joined(separator: ", ")), which this machine lacks"
    }
}
