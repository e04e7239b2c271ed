import Foundation

/// Problems with the C toolchain itself (as opposed to a kernel that does not compile, which is a
/// `CompileFailure`). Each description says what to do about it.
public enum ToolchainError: Error, CustomStringConvertible, Equatable, Sendable {
    /// No C compiler was found; `tried` lists the candidates that were looked at.
    case noCompiler(tried: [String])
    /// A compiler that was asked for (explicitly or through `LOWBIT_CC`) cannot be run.
    case compilerDoesNotRun(path: String, reason: String)
    /// A cross-compile target cannot be used with this compiler or on this machine.
    case crossTargetUnavailable(String)
    /// A file-system operation in the artifact cache or a temporary directory failed.
    case io(String)
    /// `dlopen` refused a shared object; `message` is `dlerror()`'s text.
    case loadFailed(path: String, message: String)
    /// `dlsym` did not find a symbol; `message` is `dlerror()`'s text.
    case symbolNotFound(name: String, path: String, message: String)
    /// A symbol was requested as a type that is not a pointer-sized function or pointer type.
    case badSymbolType(name: String, type: String)

    public var description: String {
        switch self {
        case let .noCompiler(tried):
            let list = tried.isEmpty ? "" : " (tried: \(tried.joined(separator: ", ")))"
            return "no C compiler found: install clang or gcc (apt-get install clang) "
                + "or set LOWBIT_CC=/path/to/cc\(list)"
        case let .compilerDoesNotRun(path, reason):
            return "C compiler '\(path)' does not run: \(reason); install clang or gcc "
                + "(apt-get install clang) or set LOWBIT_CC=/path/to/cc"
        case let .crossTargetUnavailable(reason):
            return "cross-compilation unavailable: \(reason)"
        case let .io(message):
            return message
        case let .loadFailed(path, message):
            return "cannot load \(path): \(message)"
        case let .symbolNotFound(name, path, message):
            return "symbol '\(name)' not found in \(path): \(message)"
        case let .badSymbolType(name, type):
            return "symbol '\(name)' cannot be used as \(type): it must be a pointer-sized "
                + "@convention(c) function type or pointer type"
        }
    }
}

/// A C compile that failed: the kernel's source did not compile or link. `stderr` is the compiler's
/// own message, which is what a person needs to fix the kernel or its template.
public struct CompileFailure: Error, CustomStringConvertible, Sendable {
    /// The job's name (`CompileJob.name`).
    public var jobName: String
    /// The full command line that was run, arguments separated by spaces.
    public var commandLine: String
    /// The compiler's exit status (or 128 + signal number when it was killed by a signal).
    public var exitStatus: Int32
    /// Everything the compiler printed on standard error (and standard output).
    public var stderr: String

    public init(jobName: String, commandLine: String, exitStatus: Int32, stderr: String) {
        self.jobName = jobName
        self.commandLine = commandLine
        self.exitStatus = exitStatus
        self.stderr = stderr
    }

    public var description: String {
        let message = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return "compiling \(jobName) failed (exit status \(exitStatus))\n"
            + "command: \(commandLine)\n"
            + (message.isEmpty ? "(the compiler printed nothing)" : message)
    }
}
