import Foundation

/// The result of running a short-lived helper program (the C compiler) to completion.
struct ProcessResult: Sendable {
    /// Exit status, or 128 + signal number when the program was killed by a signal.
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `executable` with `arguments` and collects its output. Both pipes are drained concurrently so
/// a chatty compiler cannot block on a full pipe. Throws only when the program cannot be started.
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]? = nil)
    throws -> ProcessResult
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()

    let errData = DataCollector()
    let errDone = DispatchSemaphore(value: 0)
    let errHandle = err.fileHandleForReading
    Thread.detachNewThread {
        errData.data = errHandle.readDataToEndOfFile()
        errDone.signal()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    errDone.wait()
    process.waitUntilExit()

    let status: Int32 =
        process.terminationReason == .uncaughtSignal
        ? 128 + process.terminationStatus : process.terminationStatus
    return ProcessResult(
        status: status,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData.data, as: UTF8.self))
}

/// Quotes one argument for display in a command line (not for execution).
func shellQuoted(_ argument: String) -> String {
    let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=+,:@%")
    if !argument.isEmpty, argument.unicodeScalars.allSatisfy({ safe.contains($0) }) { return argument }
    return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// A slot written by one thread and read by another after a semaphore hand-off.
private final class DataCollector: @unchecked Sendable {
    var data = Data()
}
