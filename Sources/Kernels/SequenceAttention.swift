import CKernels

/// One head of attention over a whole sequence, as views into row-major activation buffers.
public struct AttentionHead {
    /// `rows` query rows of `headDim` values, `queryStride` floats apart.
    public var query: UnsafePointer<Float>
    public var queryStride: Int
    /// `length` key and value rows, `keyStride` / `valueStride` floats apart.
    public var keys: UnsafePointer<Float>
    public var keyStride: Int
    public var values: UnsafePointer<Float>
    public var valueStride: Int
    /// `rows` output rows, `outputStride` floats apart.
    public var output: UnsafeMutablePointer<Float>
    public var outputStride: Int
    public var rows: Int
    public var length: Int
    /// nil: every row sees every key. Otherwise the rows are positions `firstPosition...` and
    /// row t sees keys `0...firstPosition + t` (causal).
    public var firstPosition: Int?

    public init(query: UnsafePointer<Float>, queryStride: Int, keys: UnsafePointer<Float>, keyStride: Int,
                values: UnsafePointer<Float>, valueStride: Int, output: UnsafeMutablePointer<Float>, outputStride: Int,
                rows: Int, length: Int, firstPosition: Int? = nil) {
        self.query = query
        self.queryStride = queryStride
        self.keys = keys
        self.keyStride = keyStride
        self.values = values
        self.valueStride = valueStride
        self.output = output
        self.outputStride = outputStride
        self.rows = rows
        self.length = length
        self.firstPosition = firstPosition
    }
}

extension Kernels {
    /// `output = softmax(scale · query · keysᵀ) · values` for `count` heads, `head(i)` describing
    /// the i-th; heads run in parallel on `pool` (nil: on the caller). Float32 throughout; one
    /// fused kernel per head instead of two BLAS calls and a softmax, so that the 12 heads × 2
    /// small products of a ViT layer cost no BLAS packing or thread hand-off each.
    public static func attention(heads count: Int, headDim: Int, scale: Float, pool: ComputePool?,
                                 path: KernelPath? = nil, _ head: (Int) -> AttentionHead) {
        guard count > 0, headDim > 0 else { return }
        let isa = path?.rawValue ?? -1
        withoutActuallyEscaping(head) { head in
            let run = { (i: Int) in
                let h = head(i)
                guard h.rows > 0 else { return }
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: ck_attention_scratch_floats(h.length, headDim))
                defer { scratch.deallocate() }
                ck_attention_head(isa, h.query, h.queryStride, h.keys, h.keyStride, h.values, h.valueStride,
                                  h.output, h.outputStride, h.rows, h.length, headDim, scale,
                                  h.firstPosition ?? -1, scratch)
            }
            if let pool { pool.parallelFor(count, run) } else { for i in 0..<count { run(i) } }
        }
    }
}
