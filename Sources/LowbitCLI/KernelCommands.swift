import ArgumentParser
import Foundation
import KernelKit
import Kernels
import Machine

/// `--param name=value`, repeatable.
struct ParamOptions: ParsableArguments {
    @Option(name: .customLong("param"), help: ArgumentHelp("A kernel parameter as name=value (repeatable); unset ones take the family's default.", valueName: "name=value"))
    var params: [String] = []

    /// The overrides, with `isa` defaulting to the best target of `family` this machine runs.
    func overrides(for family: any KernelFamily, isa: ISAFeatures) throws -> [String: String] {
        var result = try overrides()
        if result["isa"] == nil, family.parameter("isa") != nil, let best = family.targets.last(where: { $0.runs(on: isa) }) {
            result["isa"] = best.rawValue
        }
        return result
    }

    func overrides() throws -> [String: String] {
        var result: [String: String] = [:]
        for p in params {
            let parts = p.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ValidationError("--param expects name=value, got '\(p)'")
            }
            result[parts[0]] = parts[1]
        }
        return result
    }
}

struct KernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "List kernel families: parameters and their domains, constraints, ISA targets, shape rules."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Show only this family.")
    var family: String?

    func run() throws {
        _ = global.logger("lowbit.kernels")
        let families = try family.map { [try KernelRegistry.family(named: $0)] } ?? KernelRegistry.families
        let isa = try ISAFeatures.detect()
        for f in families {
            print("\(f.name) (template version \(f.templateVersion)): \(f.summary)")
            print("  shape: \(f.dimensions.joined(separator: " x ")); rules:")
            for rule in f.shapeRules { print("    - \(rule)") }
            let targets = f.targets.map { t in t.runs(on: isa) ? t.rawValue : "\(t.rawValue) (compile only here)" }
            print("  targets: \(targets.joined(separator: ", "))")
            var table = Table(["parameter", "default", "domain", "meaning"])
            for p in f.parameters { table.add([p.name, p.defaultValue.description, p.domain.description, p.summary]) }
            print(table.render())
            print("  constraints:")
            for c in f.constraints { print("    - \(c)") }
            print("")
        }
    }
}

struct GenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen",
        abstract: "Print the C source of one point of a family.",
        discussion: "Without --param isa=..., the best target this machine runs is used; any target can be generated."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Kernel family (see `lowbit kernels`).")
    var family: String

    @OptionGroup var params: ParamOptions

    func run() throws {
        _ = global.logger("lowbit.gen")
        let f = try KernelRegistry.family(named: family)
        // Any target can be generated; the ISA defaults to the best one this machine runs.
        let config = try f.configuration(overrides: try params.overrides(for: f, isa: try ISAFeatures.detect()), machine: nil)
        print(try f.render(config).code, terminator: "")
    }
}
