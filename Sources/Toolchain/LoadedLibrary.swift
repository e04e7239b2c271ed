import Foundation
import Glibc

/// A shared object opened with `dlopen(RTLD_NOW | RTLD_LOCAL)`, closed when this object goes away.
///
/// Function pointers obtained with `symbol(_:as:)` are only valid while the library is alive: keep the
/// `LoadedLibrary` referenced for as long as they are called. Opening and symbol lookup are
/// thread-safe in glibc, and the handle never changes, hence `@unchecked Sendable`.
public final class LoadedLibrary: @unchecked Sendable {
    /// The file that was opened.
    public let path: URL
    private let handle: UnsafeMutableRawPointer

    /// Opens `path`, resolving all its symbols now (a missing dependency fails here, not at call time).
    /// - Throws: `ToolchainError.loadFailed` with `dlerror()`'s text.
    public init(path: URL) throws {
        _ = dlerror()
        guard let handle = dlopen(path.path, RTLD_NOW | RTLD_LOCAL) else {
            throw ToolchainError.loadFailed(path: path.path, message: Self.lastError())
        }
        self.path = path
        self.handle = handle
    }

    deinit {
        dlclose(handle)
    }

    /// The address of the symbol `name`.
    /// - Throws: `ToolchainError.symbolNotFound` ("symbol 'x' not found in <path>: <dlerror>").
    public func address(of name: String) throws -> UnsafeMutableRawPointer {
        _ = dlerror()
        guard let pointer = dlsym(handle, name) else {
            throw ToolchainError.symbolNotFound(name: name, path: path.path, message: Self.lastError())
        }
        return pointer
    }

    /// The symbol `name` as `type`, which must be a `@convention(c)` function type (or another
    /// pointer-sized type), e.g. `lib.symbol("lowbit_add", as: (@convention(c) (Int32, Int32) -> Int32).self)`.
    /// Nothing checks that the C signature matches `type`: that is the caller's contract.
    public func symbol<T>(_ name: String, as type: T.Type) throws -> T {
        guard MemoryLayout<T>.size == MemoryLayout<UnsafeMutableRawPointer>.size else {
            throw ToolchainError.badSymbolType(name: name, type: "\(T.self)")
        }
        return unsafeBitCast(try address(of: name), to: T.self)
    }

    private static func lastError() -> String {
        guard let message = dlerror() else { return "unknown dlerror" }
        return String(cString: message)
    }
}
