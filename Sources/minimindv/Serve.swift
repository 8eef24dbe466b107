import ArgumentParser
import Engine
import Foundation
import Logging
import Service
import Spool
import Store

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer jobs dropped into a spool folder, writing every result to a SQLite database.",
        discussion: """
            Jobs are claimed from <spool>/incoming/ (see spool/README.md), answered in a continuously refilled \
            batch and recorded in the jobs table of --db before they move to done/. Settings come from the \
            defaults, then --config FILE (TOML: the flag names with _ for -, optionally under [serve]), then \
            the flags. SIGTERM stops claiming, finishes the running batch within --drain-seconds and puts \
            unfinished jobs back into incoming/. Under systemd (Type=notify) it reports READY/STATUS/WATCHDOG/STOPPING.
            """)

    @Option(help: "Spool folder (default ./spool).") var spool: String?
    @Option(help: "Results database (default ./results.sqlite).") var db: String?
    @Option(help: "Model file made by `minimindv convert` (default: \(ShippedModel.path)).") var model: String?
    @Option(help: "Jobs decoded together (default 4).") var batch: Int?
    @Option(help: "Compute threads (default: all cores).") var threads: Int?
    @Option(name: .customLong("cache-mb"), help: "Memory for cached image embeddings, MiB (default 256).") var cacheMB: Int?
    @Option(name: .customLong("cache-disk-mb"), help: "Bound of the embedding cache file, MiB; least recently used entries go first (default 1024).")
    var cacheDiskMB: Int?
    @Option(name: .customLong("cache-dir"), help: "Folder of the persistent embedding cache (default ./cache; '' for none).")
    var cacheDir: String?
    @Option(name: .customLong("prefix-mb"), help: "Memory for the keys and values of recent prompts, MiB: a prompt that begins like one of them (same image, same system prompt) prefills only the rest; 0 for none (default 128).")
    var prefixMB: Int?
    @Option(name: .customLong("kv-cache"), help: CacheOption.help) var kvCache: CacheOption?
    @Option(help: "TOML settings file; flags override it.") var config: String?
    @Flag(name: .customLong("no-keep-done"), help: "Delete answered jobs instead of moving them to done/.")
    var noKeepDone = false
    @Option(name: .customLong("drain-seconds"), help: "On SIGTERM, how long the running batch may take (default 30).")
    var drainSeconds: Double?
    @Option(name: .customLong("max-attempts"), help: "Starts after which a job that keeps killing the daemon is failed (default 3).")
    var maxAttempts: Int?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    /// Defaults, then the config file, then the flags.
    func settings() throws -> ServeSettings {
        var settings = ServeSettings()
        if let config {
            let text: String
            do { text = try String(contentsOfFile: config, encoding: .utf8) } catch {
                throw SpoolCommandError("cannot read config file \(config): \(error.localizedDescription)")
            }
            do { try settings.apply(configText: text, path: config) } catch { throw SpoolCommandError(error.description) }
        }
        if let spool { settings.spool = spool }
        if let db { settings.database = db }
        if let model { settings.model = model }
        if let batch { settings.batch = batch }
        if let threads { settings.threads = threads }
        if let cacheMB { settings.cacheMB = cacheMB }
        if let cacheDiskMB { settings.cacheDiskMB = cacheDiskMB }
        if let cacheDir { settings.cacheDirectory = cacheDir.isEmpty ? nil : cacheDir }
        if let prefixMB { settings.prefixMB = prefixMB }
        if let kvCache { settings.kvCache = kvCache.rawValue }
        if noKeepDone { settings.keepDone = false }
        if let drainSeconds { settings.drainSeconds = drainSeconds }
        if let maxAttempts { settings.maxAttempts = maxAttempts }
        if let logLevel { settings.logLevel = logLevel }
        guard ServeSettings.logLevels.contains(settings.logLevel) else {
            throw ValidationError("--log-level must be one of \(ServeSettings.logLevels.joined(separator: ", "))")
        }
        guard settings.batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard settings.cacheMB >= 0 else { throw ValidationError("--cache-mb cannot be negative") }
        guard settings.cacheDiskMB >= 0 else { throw ValidationError("--cache-disk-mb cannot be negative") }
        guard settings.prefixMB >= 0 else { throw ValidationError("--prefix-mb cannot be negative") }
        guard settings.maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        guard settings.drainSeconds >= 0 else { throw ValidationError("--drain-seconds cannot be negative") }
        return settings
    }

    func run() throws {
        let settings = try settings()
        let modelPath = settings.model ?? ShippedModel.path
        guard FileManager.default.fileExists(atPath: modelPath) else {
            throw ValidationError("model file \(modelPath) not found: pass --model M.gguf (or model = \"...\" in the config file)")
        }
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "minimindv.serve")

        let store: ResultStore
        do { store = try ResultStore(path: settings.database) } catch { throw SpoolCommandError("\(error)") }
        let executor = try makeExecutor(modelPath: modelPath, settings: settings, logger: logger)

        let daemonConfiguration = DaemonConfiguration(
            spool: SpoolDirectory(URL(fileURLWithPath: settings.spool)), batchSize: settings.batch,
            keepDone: settings.keepDone, maxAttempts: settings.maxAttempts,
            rescanInterval: .milliseconds(Int64(settings.rescanSeconds * 1000)),
            drainTimeout: .milliseconds(Int64(settings.drainSeconds * 1000)),
            limits: JobLimits(maxImageBytes: settings.maxImageMB << 20))
        let daemon = SpoolDaemon(configuration: daemonConfiguration, store: store, executor: executor, logger: logger)
        let signals = StopSignals { number in
            logger.notice("signal received; stopping", metadata: ["signal": "\(number)"])
            daemon.requestStop()
        }
        do { try daemon.run() } catch { throw SpoolCommandError("\(error)") }
        withExtendedLifetime(signals) {}
    }

    /// Loads the model and wraps the engine as the daemon's `JobExecutor`, with the embedding cache
    /// keyed by the vision tower's fingerprint.
    private func makeExecutor(modelPath: String, settings: ServeSettings, logger: Logger) throws -> any JobExecutor {
        let started = Date()
        let model: ChatModel
        do { model = try ChatModel(path: modelPath) } catch {
            throw SpoolCommandError("cannot load the model \(modelPath): \(error)")
        }
        let engine: Engine
        do {
            engine = try Engine(model: model.network, threads: settings.threads,
                                cachePrecision: CacheOption(rawValue: settings.kvCache)?.precision,
                                prefixBytes: settings.prefixMB << 20)
        } catch {
            throw SpoolCommandError("cannot run the model \(modelPath): \(error)")
        }
        let fingerprint = EngineJobExecutor.visionFingerprint(of: model)
        let cache = EmbeddingCache(directory: settings.cacheDirectory.map { URL(fileURLWithPath: $0) },
                                   fingerprint: fingerprint, memoryBudgetBytes: settings.cacheMB << 20,
                                   diskBudgetBytes: settings.cacheDiskMB << 20)
        logger.info("model loaded", metadata: [
            "model": "\(modelPath)", "generation": "\(model.generation)", "context": "\(model.contextLength)",
            "vision": "\(model.preprocessor != nil)", "fingerprint": "\(fingerprint.prefix(16))",
            "cache": "\(cache.fileURL?.path ?? "memory only")", "kv_cache": "\(engine.cachePrecision)",
            "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(started)))"])
        return EngineJobExecutor(model: model, modelName: URL(fileURLWithPath: modelPath).lastPathComponent, engine: engine,
                                 fingerprint: fingerprint, cache: cache, logger: logger)
    }
}

/// A failure while running `serve`, `submit` or `results` (not a usage mistake): printed without the usage text.
struct SpoolCommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
