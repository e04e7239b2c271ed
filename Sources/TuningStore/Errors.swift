/// Why the tuning database could not be opened or used. Every refusal to open a file leaves it
/// untouched and says what to do instead.
public enum TuningStoreError: Error, CustomStringConvertible, Equatable {
    /// The file is not an SQLite database at all (wrong header, too short).
    case notADatabase(path: String, reason: String)
    /// The file is an SQLite database, but not a lowbit tuning database.
    case foreignDatabase(path: String, reason: String)
    /// The file is a lowbit (or SQLite) database that fails its integrity check or was truncated.
    case corrupt(path: String, reason: String)
    /// The database was written by a newer lowbit with a schema this build does not know.
    case tooNew(path: String, found: String, supported: Int)
    /// The file could not be read, created or opened.
    case io(path: String, message: String)
    /// No machine with this fingerprint is stored (`record(machine:)` it first).
    case unknownMachine(String)
    /// An export file that cannot be used (wrong schema, newer version, bad data).
    case invalidExport(String)

    static let advice = "move it aside, or pass --db PATH / set LOWBIT_DB to use another database"

    public var description: String {
        switch self {
        case .notADatabase(let path, let reason):
            return "\(path) is not an SQLite database (\(reason)); lowbit left it unchanged: \(Self.advice)"
        case .foreignDatabase(let path, let reason):
            return "\(path) is an SQLite database but not a lowbit tuning database (\(reason)); "
                + "lowbit left it unchanged: \(Self.advice)"
        case .corrupt(let path, let reason):
            return "\(path) is damaged (\(reason)); lowbit left it unchanged: \(Self.advice) "
                + "(sqlite3's .recover may salvage its rows)"
        case .tooNew(let path, let found, let supported):
            return "\(path) was written by a newer lowbit (schema \(found), this build knows up to \(supported)); "
                + "lowbit left it unchanged: use a newer lowbit, or \(Self.advice)"
        case .io(let path, let message):
            return "cannot use tuning database \(path): \(message); \(Self.advice)"
        case .unknownMachine(let fingerprint):
            return "no machine with fingerprint \(fingerprint) in the tuning database"
        case .invalidExport(let message):
            return "invalid tuning export: \(message)"
        }
    }
}
