import Foundation

/// Which C compiler a `CompilerInfo` describes, as read from its `--version` output.
public enum CompilerFamily: String, Codable, Sendable, Hashable {
    case clang
    case gcc
    case other
}

/// One C compiler that lowbit can run.
public struct CompilerInfo: Codable, Sendable, Hashable {
    /// Absolute path of the compiler executable (symbolic links are kept as found).
    public var path: String
    public var family: CompilerFamily
    /// The first line of `<path> --version`, e.g. "clang version 21.0.0 (...)". Part of every cache key.
    public var version: String
    /// Whether the compiler can target another architecture with `--target=` (clang can).
    public var canCrossCompile: Bool

    public init(path: String, family: CompilerFamily, version: String, canCrossCompile: Bool) {
        self.path = path
        self.family = family
        self.version = version
        self.canCrossCompile = canCrossCompile
    }

    /// Runs `path --version` and builds the description from its output.
    public static func probe(path: String) throws -> CompilerInfo {
        let result: ProcessResult
        do {
            result = try runProcess(path, ["--version"])
        } catch {
            throw ToolchainError.compilerDoesNotRun(path: path, reason: "\(error)")
        }
        guard result.status == 0 else {
            let detail = (result.stderr + result.stdout).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ToolchainError.compilerDoesNotRun(
                path: path, reason: "'--version' exited with status \(result.status)"
                    + (detail.isEmpty ? "" : ": \(detail.prefix(300))"))
        }
        let text = result.stdout.isEmpty ? result.stderr : result.stdout
        let firstLine = text.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? ""
        let family = Self.family(fromVersionOutput: text)
        return CompilerInfo(path: path, family: family, version: firstLine, canCrossCompile: family == .clang)
    }

    /// Classifies `--version` output: clang says "clang version", gcc (also when installed as `cc`)
    /// names the Free Software Foundation or itself.
    static func family(fromVersionOutput text: String) -> CompilerFamily {
        let lower = text.lowercased()
        if lower.contains("clang") { return .clang }
        if lower.contains("free software foundation") || lower.hasPrefix("gcc") || lower.contains("(gcc)") {
            return .gcc
        }
        return .other
    }
}

/// Finds the C compiler lowbit uses to build kernels.
public enum CompilerDiscovery {
    /// Looks for a C compiler, in this order:
    /// 1. `explicit` (a path, or a name looked up on `PATH`);
    /// 2. the environment variable `LOWBIT_CC`;
    /// 3. the clang that sits next to the `swift` found on `PATH` (the Swift toolchain ships one), or
    ///    `/opt/swift/usr/bin/clang`;
    /// 4. `cc`, `gcc`, `clang` on `PATH`.
    ///
    /// The compiler is run with `--version` to fill in `CompilerInfo.version` and `family`. An explicit
    /// choice (1 or 2) that does not run is an error rather than silently replaced by another compiler.
    public static func discover(
        explicit: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> CompilerInfo {
        let path = searchPath(environment)
        for (requested, origin) in [(explicit, "requested compiler"), (environment["LOWBIT_CC"], "LOWBIT_CC")] {
            guard let requested, !requested.isEmpty else { continue }
            guard let resolved = resolve(requested, in: path) else {
                throw ToolchainError.compilerDoesNotRun(
                    path: requested, reason: "\(origin) '\(requested)' is not an executable file"
                        + (requested.contains("/") ? "" : " on PATH"))
            }
            return try CompilerInfo.probe(path: resolved)
        }

        var tried: [String] = []
        var candidates: [String] = []
        if let swift = resolve("swift", in: path) {
            let real = URL(fileURLWithPath: swift).resolvingSymlinksInPath()
            candidates.append(real.deletingLastPathComponent().appendingPathComponent("clang").path)
        }
        candidates.append("/opt/swift/usr/bin/clang")
        for name in ["cc", "gcc", "clang"] {
            if let found = resolve(name, in: path) { candidates.append(found) } else { tried.append(name) }
        }
        var seen = Set<String>()
        for candidate in candidates where seen.insert(candidate).inserted {
            tried.append(candidate)
            guard FileManager.default.isExecutableFile(atPath: candidate) else { continue }
            if let info = try? CompilerInfo.probe(path: candidate) { return info }
        }
        throw ToolchainError.noCompiler(tried: tried)
    }

    /// The directories of `PATH`, or a conventional default when it is unset.
    static func searchPath(_ environment: [String: String]) -> [String] {
        let value = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return value.split(separator: ":").map(String.init).filter { !$0.isEmpty }
    }

    /// A name with a slash is taken as a path; otherwise it is looked up in `path`.
    static func resolve(_ name: String, in path: [String]) -> String? {
        let fm = FileManager.default
        if name.contains("/") {
            return fm.isExecutableFile(atPath: name) ? name : nil
        }
        for directory in path {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent(name).path
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                fm.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
        }
        return nil
    }
}
