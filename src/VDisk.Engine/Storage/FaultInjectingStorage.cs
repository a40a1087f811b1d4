// A storage wrapper that fails on demand (DESIGN.md "Storage": a fault-injecting storage for tests),
// so tests can prove that a failed write leaves metadata consistent and outputs removed.
namespace VDisk.Engine.Storage;

/// <summary>Wraps another storage and throws <see cref="IOException"/> once a write budget is spent.</summary>
public sealed class FaultInjectingStorage : IStorage
{
    private readonly IStorage _inner;
    private long _writesLeft;

    /// <summary>Allows <paramref name="writesBeforeFailure"/> writes, then fails every write and flush.</summary>
    public FaultInjectingStorage(IStorage inner, long writesBeforeFailure)
    {
        _inner = inner;
        _writesLeft = writesBeforeFailure;
    }

    /// <summary>Optional size limit, like a full disk: writes past it fail with "No space left".</summary>
    public long? CapacityBytes { get; init; }

    /// <summary>Number of writes that went through.</summary>
    public long WritesDone { get; private set; }

    public string Name => _inner.Name;
    public bool CanWrite => _inner.CanWrite;
    public CacheMode CacheMode => _inner.CacheMode;
    public long Length => _inner.Length;
    public long AllocatedBytes => _inner.AllocatedBytes;
    public void ReadAt(long offset, Span<byte> buffer) => _inner.ReadAt(offset, buffer);
    public bool TryGetExtent(long offset, out bool isData, out long length) => _inner.TryGetExtent(offset, out isData, out length);
    public void Dispose() => _inner.Dispose();

    public void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        Spend(offset + data.Length);
        _inner.WriteAt(offset, data);
    }

    public void Discard(long offset, long length) { Spend(0); _inner.Discard(offset, length); }
    public void WriteZeroes(long offset, long length) { Spend(offset + length); _inner.WriteZeroes(offset, length); }
    public void Preallocate(long offset, long length) { Spend(offset + length); _inner.Preallocate(offset, length); }
    public void SetLength(long length) { Spend(length); _inner.SetLength(length); }
    public void Flush() { Spend(0); _inner.Flush(); }

    private void Spend(long end)
    {
        if (CapacityBytes is { } cap && end > cap) throw new IOException($"{Name}: No space left on device (injected).");
        if (Interlocked.Decrement(ref _writesLeft) < 0) throw new IOException($"{Name}: injected I/O error.");
        WritesDone++;
    }
}
