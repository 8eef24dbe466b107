import Service
import Testing

@Suite struct ServeSettingsFile {
    @Test func theDefaultsWorkFromTheProjectFolder() {
        let settings = ServeSettings()
        #expect(settings.spool == "./spool")
        #expect(settings.database == "./results.sqlite")
        #expect(settings.cacheDirectory == "./cache")
        #expect(settings.keepDone)
        #expect(settings.maxAttempts == 3)
    }

    @Test func aConfigFileSetsEveryKey() throws {
        var settings = ServeSettings()
        try settings.apply(configText: """
            # minimindv serve settings
            [serve]
            spool = "/var/spool/minimindv"   # the queue
            db = '/var/lib/minimindv/results.sqlite'
            model = "/models/tiny \\"v\\u00e9\\".gguf"
            batch = 8
            threads = 2
            cache_mb = 1_024
            cache_disk_mb = 64
            cache_dir = ""
            keep_done = false
            log_level = "debug"
            drain_seconds = 12.5
            rescan_seconds = 1
            max_attempts = 5
            max_image_mb = 4
            """, path: "serve.toml")
        #expect(settings.spool == "/var/spool/minimindv")
        #expect(settings.database == "/var/lib/minimindv/results.sqlite")
        #expect(settings.model == "/models/tiny \"vé\".gguf")
        #expect(settings.batch == 8)
        #expect(settings.threads == 2)
        #expect(settings.cacheMB == 1024)
        #expect(settings.cacheDiskMB == 64)
        #expect(settings.cacheDirectory == nil)
        #expect(!settings.keepDone)
        #expect(settings.logLevel == "debug")
        #expect(settings.drainSeconds == 12.5)
        #expect(settings.rescanSeconds == 1)
        #expect(settings.maxAttempts == 5)
        #expect(settings.maxImageMB == 4)
    }

    @Test(arguments: [
        ("batch = \"8\"", "serve.toml:1: batch must be an integer"),
        ("batch = 0", "serve.toml:1: batch must be at least 1"),
        ("keep_done = yes", "serve.toml:1: cannot read value yes; strings need quotes"),
        ("keep_done = 1", "serve.toml:1: keep_done must be true or false"),
        ("spool = /var/spool", "serve.toml:1: cannot read value /var/spool; strings need quotes"),
        ("model = \"open", "serve.toml:1: unterminated string"),
        ("\n\nmodle = \"m.gguf\"", "serve.toml:3: unknown key \"modle\""),
        ("[engine]", "serve.toml:1: only a [serve] table is understood here, not [engine]"),
        ("batch = 2\nbatch = 3", "serve.toml:2: batch is set twice"),
        ("log_level = \"loud\"", "serve.toml:1: log_level must be one of trace, debug, info"),
        ("just words", "serve.toml:1: expected key = value"),
        ("db = \"a\" \"b\"", "serve.toml:1: unexpected \"b\" after the value"),
    ])
    func mistakesAreReportedWithFileAndLine(text: String, expected: String) {
        var settings = ServeSettings()
        #expect {
            try settings.apply(configText: text, path: "serve.toml")
        } throws: { error in
            (error as? ConfigError)?.description.hasPrefix(expected) == true
        }
    }
}
