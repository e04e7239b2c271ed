import Crypto
import Foundation

/// One C translation unit to build into a shared object: a kernel variant's generated source, the
/// ISA flags it needs and the compiler that builds it.
public struct CompileJob: Codable, Sendable, Hashable {
    /// A human-readable stem for file names, e.g. `gemm_w8a8__avx2_mr4_nr16`. Not part of the cache
    /// key: the key is the content.
    public var name: String
    /// The complete C source.
    public var source: String
    /// ISA and target flags for this job, e.g. `["-mavx2", "-mfma"]`.
    public var flags: [String]
    public var compiler: CompilerInfo

    public init(name: String, source: String, flags: [String] = [], compiler: CompilerInfo) {
        self.name = name
        self.source = source
        self.flags = flags
        self.compiler = compiler
    }

    /// Flags every compile gets, before the job's own flags. `-ffp-contract=off` keeps the compiler from
    /// fusing a*b+c into an FMA behind the kernel's back, so float results match the reference model.
    public static let baseFlags = ["-std=c11", "-O3", "-fPIC", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]

    /// Flags added when linking a shared object (after the source file).
    public static let linkFlags = ["-shared", "-lm"]

    /// The content address of the shared object this job produces: the SHA-256 (lowercase hex) of the
    /// source, the base and link flags, the job's flags, the compiler's path and its version line,
    /// each length-prefixed so that no two different inputs share an encoding.
    public var cacheKey: String {
        var hasher = SHA256()
        func add(_ string: String) {
            let bytes = Array(string.utf8)
            var length = UInt64(bytes.count).littleEndian
            withUnsafeBytes(of: &length) { hasher.update(bufferPointer: $0) }
            hasher.update(data: bytes)
        }
        func add(_ list: [String]) {
            add("list:\(list.count)")
            list.forEach(add)
        }
        add("lowbit-artifact-v1")
        add(source)
        add(Self.baseFlags + Self.linkFlags)
        add(flags)
        add(compiler.path)
        add(compiler.version)
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// A file-name-safe version of `name` (anything outside `[A-Za-z0-9_.-]` becomes `_`).
    public var fileStem: String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
        let cleaned = String(name.map { allowed.contains($0) ? $0 : "_" }).trimmingCharacters(
            in: CharacterSet(charactersIn: "."))
        return cleaned.isEmpty ? "kernel" : String(cleaned.prefix(120))
    }
}

/// A foreign architecture to compile for without running the result (checks that kernels for ISAs
/// this machine lacks still compile).
public enum CrossTarget: String, Codable, Sendable, Hashable, CaseIterable {
    /// 64-bit Arm Linux. Needs clang and the glibc headers of Debian's `libc6-dev-arm64-cross`
    /// (sysroot `/usr/aarch64-linux-gnu`).
    case aarch64Linux

    /// The target triple passed as `--target=`.
    public var triple: String {
        switch self {
        case .aarch64Linux: return "aarch64-linux-gnu"
        }
    }

    /// The sysroot holding the target's C library headers.
    public var sysroot: String {
        switch self {
        case .aarch64Linux: return "/usr/aarch64-linux-gnu"
        }
    }

    /// The Debian package that provides `sysroot`.
    public var debianPackage: String {
        switch self {
        case .aarch64Linux: return "libc6-dev-arm64-cross"
        }
    }

    /// Flags that select this target.
    public var flags: [String] { ["--target=\(triple)", "--sysroot=\(sysroot)"] }

    /// Throws `ToolchainError.crossTargetUnavailable` when `compiler` cannot build for this target here.
    public func checkAvailable(with compiler: CompilerInfo) throws {
        guard compiler.canCrossCompile else {
            throw ToolchainError.crossTargetUnavailable(
                "\(compiler.path) (\(compiler.family.rawValue)) cannot cross-compile; use clang "
                    + "(LOWBIT_CC=/path/to/clang)")
        }
        let header = URL(fileURLWithPath: sysroot).appendingPathComponent("include/stdint.h").path
        guard FileManager.default.fileExists(atPath: header) else {
            throw ToolchainError.crossTargetUnavailable(
                "no \(triple) sysroot at \(sysroot) (\(header) missing): apt-get install \(debianPackage)")
        }
    }
}

// MARK: Compiling

/// Compiles `job` into a shared object at `output`, reading the source from `sourceFile`.
/// Throws `CompileFailure` with the compiler's message when the compiler fails.
func compileSharedObject(_ job: CompileJob, sourceFile: URL, output: URL) throws {
    let arguments =
        CompileJob.baseFlags + job.flags + ["-o", output.path, sourceFile.path] + CompileJob.linkFlags
    try runCompiler(job, arguments)
}

private func runCompiler(_ job: CompileJob, _ arguments: [String]) throws {
    let commandLine = ([job.compiler.path] + arguments).map(shellQuoted).joined(separator: " ")
    let result: ProcessResult
    do {
        result = try runProcess(job.compiler.path, arguments)
    } catch {
        throw CompileFailure(
            jobName: job.name, commandLine: commandLine, exitStatus: 127,
            stderr: "cannot run the compiler: \(error)")
    }
    guard result.status == 0 else {
        throw CompileFailure(
            jobName: job.name, commandLine: commandLine, exitStatus: result.status,
            stderr: result.stderr + result.stdout)
    }
}

/// Compiles `job` to an object file only (`-c`), without linking or caching, optionally for a
/// foreign `target`: the check used for ISAs this machine cannot run.
///
/// - Throws: `ToolchainError.crossTargetUnavailable` when `target` cannot be used here (the caller may
///   skip), `CompileFailure` when the source does not compile, `ToolchainError.io` for temporary files.
public func checkCompiles(_ job: CompileJob, target: CrossTarget?) throws {
    if let target { try target.checkAvailable(with: job.compiler) }
    let fm = FileManager.default
    let directory = fm.temporaryDirectory.appendingPathComponent("lowbit-check-\(UUID().uuidString)")
    do {
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
    } catch {
        throw ToolchainError.io("cannot create \(directory.path): \(error)")
    }
    defer { try? fm.removeItem(at: directory) }
    let source = directory.appendingPathComponent("\(job.fileStem).c")
    let object = directory.appendingPathComponent("\(job.fileStem).o")
    do {
        try Data(job.source.utf8).write(to: source)
    } catch {
        throw ToolchainError.io("cannot write \(source.path): \(error)")
    }
    let arguments =
        (target?.flags ?? []) + CompileJob.baseFlags + job.flags + ["-c", "-o", object.path, source.path]
    try runCompiler(job, arguments)
}
