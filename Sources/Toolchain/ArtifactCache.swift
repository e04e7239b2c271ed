import Crypto
import Foundation
import Glibc
import Logging

/// A shared object produced for a `CompileJob`, ready for `LoadedLibrary`.
public struct Artifact: Sendable, Hashable {
    /// The shared object, `<cache>/<cacheKey>/<name>.so`.
    public var path: URL
    public var cacheKey: String
    /// True when the shared object was already in the cache and its bytes matched the manifest.
    public var fromCache: Bool
    /// Wall time of the compile, or nil when the artifact came from the cache.
    public var compileSeconds: Double?
    /// Why an existing cache entry was not used (missing manifest, size or hash mismatch...), or nil.
    public var rebuildReason: String?
}

/// What the cache records next to each shared object, in `manifest.json`.
public struct ArtifactManifest: Codable, Sendable, Hashable {
    public var formatVersion: Int
    public var jobName: String
    public var cacheKey: String
    /// File names inside the entry's directory.
    public var libraryFile: String
    public var sourceFile: String
    public var baseFlags: [String]
    public var linkFlags: [String]
    public var flags: [String]
    public var compiler: CompilerInfo
    /// Size in bytes and SHA-256 (lowercase hex) of the shared object, checked on every lookup.
    public var librarySize: Int
    public var librarySHA256: String
    public var compileSeconds: Double
    public var created: Date
}

/// A content-addressed cache of compiled kernels on disk.
///
/// Layout: `<directory>/<cacheKey>/<name>.so`, `manifest.json` and `<name>.c` (the source, kept for
/// people to read). A lookup re-hashes the shared object and compares it with the manifest; a missing
/// manifest or a size or hash mismatch (a corrupted or truncated file) means the entry is rebuilt,
/// never loaded. New entries are compiled into temporary files in the entry's directory and renamed
/// into place, so concurrent processes building the same job never see a partial file.
///
/// Thread-safe: lookups of different jobs run concurrently; two threads asking for the same job wait
/// for one compile.
public final class ArtifactCache: @unchecked Sendable {
    /// The cache's root directory.
    public let directory: URL
    private let logger: Logger
    private let condition = NSCondition()
    private var inFlight = Set<String>()  // guarded by `condition`

    /// - Parameters:
    ///   - directory: the cache root; nil means `defaultDirectory(environment:)`.
    ///   - environment: consulted for the default directory.
    public init(
        directory: URL? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "lowbit.toolchain.cache")
    ) {
        self.directory = directory ?? Self.defaultDirectory(environment: environment)
        self.logger = logger
    }

    /// `$LOWBIT_CACHE_DIR`, else `$XDG_CACHE_HOME/lowbit/kernels`, else `~/.cache/lowbit/kernels`.
    public static func defaultDirectory(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> URL {
        if let dir = environment["LOWBIT_CACHE_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: dir, isDirectory: true)
        }
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            return URL(fileURLWithPath: xdg, isDirectory: true).appendingPathComponent("lowbit/kernels")
        }
        let home =
            environment["HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0, isDirectory: true) }
            ?? FileManager.default.homeDirectoryForCurrentUser
        return home.appendingPathComponent(".cache/lowbit/kernels")
    }

    /// The shared object for `job`: from the cache when an intact entry exists, otherwise compiled now.
    ///
    /// - Throws: `CompileFailure` when the source does not compile (nothing is left in the cache);
    ///   `ToolchainError.io` when the cache directory cannot be written.
    public func artifact(for job: CompileJob) throws -> Artifact {
        let key = job.cacheKey
        condition.lock()
        while inFlight.contains(key) { condition.wait() }
        inFlight.insert(key)
        condition.unlock()
        defer {
            condition.lock()
            inFlight.remove(key)
            condition.broadcast()
            condition.unlock()
        }

        let entry = directory.appendingPathComponent(key, isDirectory: true)
        var reason: String?
        switch lookup(entry: entry, key: key) {
        case .hit(let path):
            logger.debug("cache hit", metadata: ["job": "\(job.name)", "key": "\(key)"])
            return Artifact(path: path, cacheKey: key, fromCache: true, compileSeconds: nil, rebuildReason: nil)
        case .miss:
            break
        case .invalid(let why):
            reason = why
            logger.notice(
                "rebuilding cached kernel: \(why)",
                metadata: ["job": "\(job.name)", "key": "\(key)", "entry": "\(entry.path)"])
        }
        return try build(job, key: key, entry: entry, reason: reason)
    }

    // MARK: Lookup

    private enum Lookup {
        case hit(URL)
        case miss
        case invalid(String)
    }

    private func lookup(entry: URL, key: String) -> Lookup {
        let fm = FileManager.default
        let manifestURL = entry.appendingPathComponent("manifest.json")
        guard fm.fileExists(atPath: manifestURL.path) else {
            let leftovers = (try? fm.contentsOfDirectory(atPath: entry.path))?.filter { $0.hasSuffix(".so") } ?? []
            return leftovers.isEmpty ? .miss : .invalid("manifest.json is missing next to \(leftovers.sorted()[0])")
        }
        let manifest: ArtifactManifest
        do {
            manifest = try Self.decoder.decode(ArtifactManifest.self, from: Data(contentsOf: manifestURL))
        } catch {
            return .invalid("manifest.json is unreadable: \(error)")
        }
        guard manifest.cacheKey == key, !manifest.libraryFile.contains("/") else {
            return .invalid("manifest.json describes another entry (\(manifest.cacheKey))")
        }
        let library = entry.appendingPathComponent(manifest.libraryFile)
        guard let bytes = try? Data(contentsOf: library) else {
            return .invalid("\(manifest.libraryFile) is missing or unreadable")
        }
        guard bytes.count == manifest.librarySize else {
            return .invalid(
                "\(manifest.libraryFile) has \(bytes.count) bytes, the manifest says \(manifest.librarySize) (truncated or corrupted)")
        }
        let digest = Self.sha256(bytes)
        guard digest == manifest.librarySHA256 else {
            return .invalid(
                "\(manifest.libraryFile) SHA-256 \(digest.prefix(16))... differs from the manifest's \(manifest.librarySHA256.prefix(16))... (corrupted)")
        }
        return .hit(library)
    }

    // MARK: Build

    private func build(_ job: CompileJob, key: String, entry: URL, reason: String?) throws -> Artifact {
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: entry, withIntermediateDirectories: true)
        } catch {
            throw ToolchainError.io("cannot create cache directory \(entry.path): \(error)")
        }
        // A stale manifest must not vouch for the file we are about to replace.
        if reason != nil { unlink(entry.appendingPathComponent("manifest.json").path) }

        let stem = job.fileStem
        let tag = ".tmp-\(getpid())-\(UUID().uuidString.prefix(8))-"
        let sourceTemp = entry.appendingPathComponent(tag + stem + ".c")
        let libraryTemp = entry.appendingPathComponent(tag + stem + ".so")
        let manifestTemp = entry.appendingPathComponent(tag + "manifest.json")
        let temps = [sourceTemp, libraryTemp, manifestTemp]
        var published = false
        defer {
            for temp in temps { unlink(temp.path) }
            // Leave nothing behind for a job that failed (rmdir only removes an empty directory, so an
            // entry another process is filling at the same time survives).
            if !published { rmdir(entry.path) }
        }

        do {
            try Data(job.source.utf8).write(to: sourceTemp)
        } catch {
            throw ToolchainError.io("cannot write \(sourceTemp.path): \(error)")
        }
        let start = ContinuousClock.now
        try compileSharedObject(job, sourceFile: sourceTemp, output: libraryTemp)
        let elapsed = start.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18

        let bytes: Data
        do {
            bytes = try Data(contentsOf: libraryTemp)
        } catch {
            throw ToolchainError.io("cannot read the compiled \(libraryTemp.path): \(error)")
        }
        let manifest = ArtifactManifest(
            formatVersion: 1, jobName: job.name, cacheKey: key, libraryFile: stem + ".so",
            sourceFile: stem + ".c", baseFlags: CompileJob.baseFlags, linkFlags: CompileJob.linkFlags,
            flags: job.flags, compiler: job.compiler, librarySize: bytes.count,
            librarySHA256: Self.sha256(bytes), compileSeconds: seconds, created: Date())
        do {
            try Self.encoder.encode(manifest).write(to: manifestTemp)
        } catch {
            throw ToolchainError.io("cannot write \(manifestTemp.path): \(error)")
        }

        let library = entry.appendingPathComponent(manifest.libraryFile)
        // The manifest goes last: an entry is complete once its manifest exists.
        for (from, to) in [
            (libraryTemp, library), (sourceTemp, entry.appendingPathComponent(manifest.sourceFile)),
            (manifestTemp, entry.appendingPathComponent("manifest.json")),
        ] {
            guard rename(from.path, to.path) == 0 else {
                let message = String(cString: strerror(errno))
                throw ToolchainError.io("cannot rename \(from.path) to \(to.path): \(message)")
            }
        }
        published = true
        logger.debug(
            "compiled kernel",
            metadata: ["job": "\(job.name)", "key": "\(key)", "seconds": "\(seconds)"])
        return Artifact(path: library, cacheKey: key, fromCache: false, compileSeconds: seconds, rebuildReason: reason)
    }

    // MARK: Helpers

    static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }()
}
