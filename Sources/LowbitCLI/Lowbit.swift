import ArgumentParser
import Foundation
import Logging

/// The `lowbit` command: thin glue over the library modules.
public struct Lowbit: ParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "lowbit",
        abstract: "A kernel research workbench and autotuner for low-bit LLM kernels.",
        discussion: """
            Start with `lowbit machine` to see what lowbit knows about this machine, and \
            `lowbit counters` to see which performance events it can count.
            """,
        version: version,
        subcommands: [
            MachineCommand.self, CountersCommand.self, KernelsCommand.self, GenCommand.self, RunCommand.self,
            BenchCommand.self, TuneCommand.self, DbCommand.self, ExportCommand.self, ImportCommand.self,
            LookupCommand.self, AccuracyCommand.self, RooflineCommand.self, CompareCommand.self, ReportCommand.self, ModelCommand.self,
            VerifyCommand.self,
            QuantizeCommand.self,
            WorkerCommand.self,
            GenerateCommand.self, ServeBenchCommand.self,
        ]
    )

    public init() {}
}

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log detail on standard error.")
    var logLevel: LogLevel = .warning

    /// Sets up swift-log once per process (every logger, the libraries' included, at the chosen level)
    /// and returns a logger for `label`.
    func logger(_ label: String) -> Logger {
        LogSetup.bootstrap(level: logLevel.level)
        return Logger(label: label)
    }
}

enum LogLevel: String, CaseIterable, ExpressibleByArgument {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level { Logger.Level(rawValue: rawValue)! }
}

enum LogSetup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var done = false

    static func bootstrap(level: Logger.Level) {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Lowbit {
    /// Entry point: names a mistyped subcommand and lists the valid ones before argument-parser's
    /// generic "unexpected argument" can.
    public static func runFromCommandLine() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        let names = configuration.subcommands.filter { $0.configuration.shouldDisplay }.compactMap { $0.configuration.commandName } + ["help"]
        let hidden = configuration.subcommands.filter { !$0.configuration.shouldDisplay }.compactMap { $0.configuration.commandName }
        if let first = arguments.first, !first.hasPrefix("-"), !names.contains(first), !hidden.contains(first) {
            let guess = names.min { editDistance($0, first) < editDistance($1, first) }
            var message = "Error: unknown command '\(first)'. Valid commands: \(names.joined(separator: ", "))."
            if let guess, editDistance(guess, first) <= 2 { message += " Did you mean '\(guess)'?" }
            FileHandle.standardError.write(Data((message + "\nSee 'lowbit --help'.\n").utf8))
            Foundation.exit(64)
        }
        main(arguments)
    }

    /// Levenshtein distance, for "did you mean".
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in a.indices {
            var diagonal = row[0]
            row[0] = i + 1
            for j in b.indices {
                let above = row[j + 1]
                row[j + 1] = Swift.min(above + 1, row[j] + 1, diagonal + (a[i] == b[j] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}
