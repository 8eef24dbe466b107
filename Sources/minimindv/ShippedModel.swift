/// The demo model that ships in `models/`, so that `ask`, `serve` and `bench` run from the
/// project folder without a conversion first.
enum ShippedModel {
    static let path = "models/minimind-demo.gguf"
}
