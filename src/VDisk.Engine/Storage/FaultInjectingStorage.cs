// A storage wrapper that fails on demand (DESIGN.md "Storage": a fault-injecting storage for tests),
// so tests can prove that a failed write leaves metadata consistent and outputs removed.
namespace VDisk.Engine.Storage;

/// <summary>Wraps another storage and throws <see cref="IOException"/> once a write budget is spent.</summary>
public sealed class FaultInjectingStorage : StorageWrapper
{
    private long _writesLeft;

    /// <summary>Allows <paramref name="writesBeforeFailure"/> writes, then fails every write and flush.</summary>
    public FaultInjectingStorage(IStorage inner, long writesBeforeFailure) : base(inner) => _writesLeft = writesBeforeFailure;

    /// <summary>Optional size limit, like a full disk: writes past it fail with "No space left".</summary>
    public long? CapacityBytes { get; init; }

    /// <summary>Number of writes that went through.</summary>
    public long WritesDone { get; private set; }

    public override void WriteAt(long offset, ReadOnlySpan<byte> data) { Spend(offset + data.Length); Inner.WriteAt(offset, data); }
    public override void Discard(long offset, long length) { Spend(0); Inner.Discard(offset, length); }
    public override void WriteZeroes(long offset, long length) { Spend(offset + length); Inner.WriteZeroes(offset, length); }
    public override void Preallocate(long offset, long length) { Spend(offset + length); Inner.Preallocate(offset, length); }
    public override void SetLength(long length) { Spend(length); Inner.SetLength(length); }
    public override void Flush() { Spend(0); Inner.Flush(); }

    private void Spend(long end)
    {
        if (CapacityBytes is { } cap && end > cap) throw new IOException($"{Name}: No space left on device (injected).");
        if (Interlocked.Decrement(ref _writesLeft) < 0) throw new IOException($"{Name}: injected I/O error.");
        WritesDone++;
    }
}
