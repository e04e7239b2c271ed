import Foundation
import Testing

@testable import Toolchain

/// A fresh temporary directory, removed at the end of the test.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("lowbit-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
}

let addSource = """
    int lowbit_add(int a, int b);
    int lowbit_add(int a, int b) { return a + b; }
    """

typealias AddFunction = @convention(c) (Int32, Int32) -> Int32

@Suite("Compiler discovery")
struct DiscoveryTests {
    @Test func discoveryFindsACompilerWithAVersion() throws {
        let compiler = try CompilerDiscovery.discover()
        #expect(FileManager.default.isExecutableFile(atPath: compiler.path))
        #expect(!compiler.version.isEmpty)
        #expect(compiler.canCrossCompile == (compiler.family == .clang))
    }

    @Test func explicitCompilerIsUsedAndABrokenOneIsAnError() throws {
        let gcc = "/usr/bin/gcc"
        if FileManager.default.isExecutableFile(atPath: gcc) {
            let found = try CompilerDiscovery.discover(explicit: gcc)
            #expect(found.path == gcc)
            #expect(found.family == .gcc)
        }
        #expect {
            try CompilerDiscovery.discover(explicit: "/nonexistent/lowbit-cc")
        } throws: { error in
            "\(error)".contains("/nonexistent/lowbit-cc") && "\(error)".contains("LOWBIT_CC")
        }
        // LOWBIT_CC is honoured, and a broken one is reported rather than silently replaced.
        #expect(throws: ToolchainError.self) {
            try CompilerDiscovery.discover(environment: ["LOWBIT_CC": "/nonexistent/cc", "PATH": "/usr/bin"])
        }
    }

    @Test func noCompilerSaysWhatToDo() {
        let error = ToolchainError.noCompiler(tried: ["cc"])
        #expect("\(error)".contains("apt-get install clang"))
        #expect("\(error)".contains("LOWBIT_CC=/path/to/cc"))
    }

    @Test func familyIsReadFromVersionOutput() {
        #expect(CompilerInfo.family(fromVersionOutput: "clang version 21.0.0 (https://...)") == .clang)
        #expect(CompilerInfo.family(fromVersionOutput: "Debian clang version 14.0.6") == .clang)
        #expect(
            CompilerInfo.family(
                fromVersionOutput: "cc (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.")
                == .gcc)
        #expect(CompilerInfo.family(fromVersionOutput: "tcc version 0.9.27") == .other)
    }
}

@Suite("Compiling, caching and loading")
struct CacheTests {
    let compiler: CompilerInfo
    init() throws { compiler = try CompilerDiscovery.discover() }

    func job(_ source: String = addSource, flags: [String] = [], name: String = "add") -> CompileJob {
        CompileJob(name: name, source: source, flags: flags, compiler: compiler)
    }

    @Test func compilesLoadsAndCalls() throws {
        let dir = try TempDir()
        let cache = ArtifactCache(directory: dir.url)
        let artifact = try cache.artifact(for: job())
        #expect(!artifact.fromCache)
        #expect(artifact.compileSeconds != nil)
        #expect(artifact.path.lastPathComponent == "add.so")
        #expect(artifact.path.deletingLastPathComponent().lastPathComponent == artifact.cacheKey)
        let entry = artifact.path.deletingLastPathComponent()
        #expect(FileManager.default.fileExists(atPath: entry.appendingPathComponent("manifest.json").path))
        #expect(FileManager.default.fileExists(atPath: entry.appendingPathComponent("add.c").path))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: entry.path).filter { $0.hasPrefix(".tmp") }
        #expect(leftovers.isEmpty)

        let library = try LoadedLibrary(path: artifact.path)
        let add = try library.symbol("lowbit_add", as: AddFunction.self)
        #expect(add(40, 2) == 42)
        #expect(add(-7, 3) == -4)

        let again = try cache.artifact(for: job())
        #expect(again.fromCache)
        #expect(again.compileSeconds == nil)
        #expect(again.path == artifact.path)
        // A fresh cache object on the same directory (another process, say) also hits.
        #expect(try ArtifactCache(directory: dir.url).artifact(for: job()).fromCache)
    }

    @Test func compileErrorCarriesTheCompilersMessage() throws {
        let dir = try TempDir()
        let cache = ArtifactCache(directory: dir.url)
        let bad = job("int lowbit_bad(void) { return undeclared_thing + ; }", name: "bad")
        do {
            _ = try cache.artifact(for: bad)
            Issue.record("bad C compiled")
        } catch let failure as CompileFailure {
            #expect(failure.jobName == "bad")
            #expect(failure.exitStatus != 0)
            #expect(failure.stderr.contains("error"))
            #expect(failure.commandLine.contains("-Werror"))
            #expect("\(failure)".contains("error"))
        }
        // Nothing is left in the cache for a failed job.
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: dir.url.path)) ?? []
        #expect(contents.isEmpty, "cache holds \(contents)")
    }

    @Test func werrorCatchesAnUnusedVariable() throws {
        let dir = try TempDir()
        let source = """
            int lowbit_unused(int a);
            int lowbit_unused(int a) { int unused = a * 2; return a; }
            """
        #expect {
            try ArtifactCache(directory: dir.url).artifact(for: job(source, name: "unused"))
        } throws: { error in
            guard let failure = error as? CompileFailure else { return false }
            return failure.stderr.contains("unused")
        }
    }

    @Test func cacheKeyFollowsSourceFlagsAndCompilerVersion() {
        let base = job()
        var otherSource = base
        otherSource.source += "\n"
        var otherFlags = base
        otherFlags.flags = ["-mavx2"]
        var otherVersion = base
        otherVersion.compiler.version += " (patched)"
        var otherPath = base
        otherPath.compiler.path = "/usr/bin/other-cc"
        var otherName = base
        otherName.name = "renamed"

        let keys = [base, otherSource, otherFlags, otherVersion, otherPath].map(\.cacheKey)
        #expect(Set(keys).count == keys.count)
        #expect(base.cacheKey == job().cacheKey, "the key is deterministic")
        #expect(otherName.cacheKey == base.cacheKey, "the name is a label, not content")
        #expect(base.cacheKey.count == 64)
        // Length prefixes keep the boundary between flags unambiguous.
        var split1 = base
        split1.flags = ["-mavx", "2"]
        var split2 = base
        split2.flags = ["-mavx2"]
        #expect(split1.cacheKey != split2.cacheKey)
    }

    @Test(arguments: ["corrupted", "truncated", "manifestMissing"])
    func damagedArtifactIsRebuilt(damage: String) throws {
        let dir = try TempDir()
        let cache = ArtifactCache(directory: dir.url)
        let first = try cache.artifact(for: job())
        let size = try FileManager.default.attributesOfItem(atPath: first.path.path)[.size] as! Int

        switch damage {
        case "corrupted":
            let handle = try FileHandle(forWritingTo: first.path)
            try handle.seek(toOffset: UInt64(size / 2))
            try handle.write(contentsOf: Data(repeating: 0xFF, count: 64))
            try handle.close()
        case "truncated":
            let handle = try FileHandle(forWritingTo: first.path)
            try handle.truncate(atOffset: UInt64(size / 3))
            try handle.close()
        default:
            try FileManager.default.removeItem(
                at: first.path.deletingLastPathComponent().appendingPathComponent("manifest.json"))
        }

        let rebuilt = try cache.artifact(for: job())
        #expect(!rebuilt.fromCache)
        #expect(rebuilt.rebuildReason != nil)
        #expect(rebuilt.path == first.path)
        let library = try LoadedLibrary(path: rebuilt.path)
        #expect(try library.symbol("lowbit_add", as: AddFunction.self)(2, 3) == 5)
        #expect(try cache.artifact(for: job()).fromCache)
    }

    @Test func missingSymbolErrorNamesTheSymbol() throws {
        let dir = try TempDir()
        let artifact = try ArtifactCache(directory: dir.url).artifact(for: job())
        let library = try LoadedLibrary(path: artifact.path)
        #expect {
            try library.symbol("lowbit_missing_kernel", as: AddFunction.self)
        } throws: { error in
            let text = "\(error)"
            return text.contains("symbol 'lowbit_missing_kernel' not found in") && text.contains(artifact.path.path)
        }
        // A Swift (thick) function type is not a C function pointer.
        #expect(throws: ToolchainError.self) {
            try library.symbol("lowbit_add", as: ((Int32, Int32) -> Int32).self)
        }
    }

    @Test func loadingANonLibraryFailsWithDlerror() throws {
        let dir = try TempDir()
        let file = dir.url.appendingPathComponent("not-a-library.so")
        try Data("hello".utf8).write(to: file)
        #expect {
            try LoadedLibrary(path: file)
        } throws: { error in
            "\(error)".contains(file.path)
        }
    }

    @Test func concurrentRequestsForOneJobCompileOnce() async throws {
        let dir = try TempDir()
        let cache = ArtifactCache(directory: dir.url)
        let job = self.job()
        let results = try await withThrowingTaskGroup(of: Artifact.self) { group in
            for _ in 0..<4 { group.addTask { try cache.artifact(for: job) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter { !$0.fromCache }.count == 1)
        #expect(Set(results.map(\.path)).count == 1)
    }

    @Test func aarch64DotprodCompilesOnly() throws {
        // Prefer clang: only clang cross-compiles.
        let clang = (try? CompilerDiscovery.discover(explicit: "/opt/swift/usr/bin/clang")) ?? compiler
        let source = """
            #include <arm_neon.h>
            #include <stdint.h>
            int32x4_t lowbit_dot(int32x4_t acc, int8x16_t a, int8x16_t b);
            int32x4_t lowbit_dot(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
            """
        let dot = CompileJob(name: "dot", source: source, flags: ["-march=armv8.2-a+dotprod"], compiler: clang)
        do {
            try checkCompiles(dot, target: .aarch64Linux)
        } catch let ToolchainError.crossTargetUnavailable(reason) {
            try Test.cancel("skipped: aarch64 cross-compilation unavailable: \(reason)")
        }
        // And the same check notices a real error for the foreign target (dotprod needs the flag).
        var withoutFlag = dot
        withoutFlag.flags = ["-march=armv8-a"]
        #expect(throws: CompileFailure.self) { try checkCompiles(withoutFlag, target: .aarch64Linux) }
    }

    @Test func crossTargetNeedsClang() throws {
        let gcc = CompilerInfo(path: "/usr/bin/gcc", family: .gcc, version: "gcc 12", canCrossCompile: false)
        #expect {
            try checkCompiles(CompileJob(name: "x", source: "", compiler: gcc), target: .aarch64Linux)
        } throws: { error in
            if case ToolchainError.crossTargetUnavailable = error { return true }
            return false
        }
    }

    @Test func nativeCompileOnlyCheck() throws {
        try checkCompiles(job(), target: nil)
        #expect(throws: CompileFailure.self) { try checkCompiles(job("int x(void) { return y; }"), target: nil) }
    }
}

@Suite("Cache directory")
struct CacheDirectoryTests {
    @Test func respectsLowbitCacheDir() throws {
        let dir = try TempDir()
        let chosen = dir.url.appendingPathComponent("kernels-here")
        let env = ["LOWBIT_CACHE_DIR": chosen.path, "XDG_CACHE_HOME": "/xdg", "HOME": "/home/someone"]
        #expect(ArtifactCache.defaultDirectory(environment: env).path == chosen.path)
        #expect(ArtifactCache(environment: env).directory.path == chosen.path)

        let compiler = try CompilerDiscovery.discover()
        let artifact = try ArtifactCache(environment: env).artifact(
            for: CompileJob(name: "add", source: addSource, compiler: compiler))
        #expect(artifact.path.path.hasPrefix(chosen.path))
    }

    @Test func fallsBackToXDGThenHome() {
        #expect(
            ArtifactCache.defaultDirectory(environment: ["XDG_CACHE_HOME": "/xdg", "HOME": "/home/u"]).path
                == "/xdg/lowbit/kernels")
        #expect(
            ArtifactCache.defaultDirectory(environment: ["HOME": "/home/u"]).path == "/home/u/.cache/lowbit/kernels")
    }
}
