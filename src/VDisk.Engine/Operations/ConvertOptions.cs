// Options for converting an image, with qemu-img convert's meanings and defaults (DESIGN.md "Operations").
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>How to convert an image.</summary>
public sealed record ConvertOptions
{
    /// <summary>Format of the source (null: probe).</summary>
    public ImageFormat? SourceFormat { get; init; }
    /// <summary>Format to write.</summary>
    public ImageFormat DestinationFormat { get; init; } = ImageFormat.Qcow2;
    /// <summary>Variant of the destination format.</summary>
    public ImageSubformat Subformat { get; init; } = ImageSubformat.Default;
    /// <summary>Compress the output (qcow2 compressed clusters, or VMDK streamOptimized grains), like qemu-img -c.</summary>
    public bool Compress { get; init; }
    /// <summary>Compression algorithm for qcow2 output.</summary>
    public CompressionType CompressionType { get; init; } = CompressionType.Zlib;
    /// <summary>Destination cluster size (qcow2); null keeps the format default.</summary>
    public int? ClusterSize { get; init; }
    /// <summary>Destination preallocation.</summary>
    public Preallocation Preallocation { get; init; } = Preallocation.Off;
    /// <summary>qcow2 compat of the output ("0.10" or "1.1").</summary>
    public string Compat { get; init; } = "1.1";
    /// <summary>
    /// Make the output an overlay of this image (full path), holding only what differs from it, like
    /// qemu-img convert -B.
    /// </summary>
    public string? BackingPath { get; init; }
    /// <summary>Store <see cref="BackingPath"/> relative to the output's folder.</summary>
    public bool BackingPathRelative { get; init; } = true;
    /// <summary>Format of <see cref="BackingPath"/> (null: probe).</summary>
    public ImageFormat? BackingFormat { get; init; }
    /// <summary>
    /// Zero runs at least this long (and aligned to it) are left unwritten (sparse), like qemu-img -S.
    /// 0 writes every byte.
    /// </summary>
    public long SparseThreshold { get; init; } = 4096;
    /// <summary>Convert the state of this internal snapshot (name or id) instead of the current state, like -l.</summary>
    public string? Snapshot { get; init; }
    /// <summary>Worker threads for reading, zero detection and compression.</summary>
    public int ThrottleLimit { get; init; } = Environment.ProcessorCount;
    /// <summary>Cache mode of the destination.</summary>
    public CacheMode CacheMode { get; init; } = CacheMode.Writeback;
    /// <summary>Cache mode of the source chain.</summary>
    public CacheMode SourceCacheMode { get; init; } = CacheMode.Writeback;
    /// <summary>Replace an existing destination.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Encrypt the destination with LUKS (qcow2 only, not with compression, as in QEMU); null: unencrypted.</summary>
    public Crypto.LuksFormatOptions? Encryption { get; init; }
    /// <summary>The destination's passphrase when <see cref="Encryption"/> is set (owned by the caller).</summary>
    public Crypto.Passphrase? Passphrase { get; init; }
    /// <summary>Sees every chunk read from the source (on worker threads) and approves the output before it is put in place.</summary>
    internal IReadVerifier? Verifier { get; init; }
}

/// <summary>Checks what a conversion reads (a restore checks it against a backup's block hashes).</summary>
internal interface IReadVerifier
{
    /// <summary>Called on a worker thread with each chunk read from the source; throws to stop the conversion.</summary>
    void Observe(long offset, ReadOnlySpan<byte> data);

    /// <summary>Called once the copy is complete, before the output is put in place; throws to discard it.</summary>
    void Complete();
}

/// <summary>Progress of a long operation.</summary>
/// <param name="BytesDone">Guest bytes processed so far.</param>
/// <param name="BytesTotal">Guest bytes to process.</param>
public readonly record struct OperationProgress(long BytesDone, long BytesTotal);

/// <summary>What a conversion did.</summary>
public sealed record ConvertResult
{
    public required string Destination { get; init; }
    public required long VirtualSize { get; init; }
    /// <summary>Guest bytes written as data (compressed or not).</summary>
    public required long BytesWritten { get; init; }
    /// <summary>Clusters stored compressed.</summary>
    public required long CompressedUnits { get; init; }
    /// <summary>Things the caller should be told, such as preallocation falling back to writing zeroes.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = Array.Empty<string>();
}
