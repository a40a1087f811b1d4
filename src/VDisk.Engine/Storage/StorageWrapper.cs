// A storage that forwards everything to another one; wrappers (fault injection, write recording in
// tests) override only what they watch.
namespace VDisk.Engine.Storage;

/// <summary>Forwards every call to <see cref="Inner"/>.</summary>
public abstract class StorageWrapper : IStorage
{
    /// <summary>Wraps <paramref name="inner"/>, which this wrapper then owns.</summary>
    protected StorageWrapper(IStorage inner) => Inner = inner;

    /// <summary>The wrapped storage.</summary>
    protected IStorage Inner { get; }

    public virtual string Name => Inner.Name;
    public virtual bool CanWrite => Inner.CanWrite;
    public virtual CacheMode CacheMode => Inner.CacheMode;
    public virtual int Alignment => Inner.Alignment;
    public virtual long Length => Inner.Length;
    public virtual long AllocatedBytes => Inner.AllocatedBytes;
    public virtual void ReadAt(long offset, Span<byte> buffer) => Inner.ReadAt(offset, buffer);
    public virtual void WriteAt(long offset, ReadOnlySpan<byte> data) => Inner.WriteAt(offset, data);
    public virtual void Discard(long offset, long length) => Inner.Discard(offset, length);
    public virtual void WriteZeroes(long offset, long length) => Inner.WriteZeroes(offset, length);
    public virtual void Preallocate(long offset, long length) => Inner.Preallocate(offset, length);
    public virtual void SetLength(long length) => Inner.SetLength(length);
    public virtual void Flush() => Inner.Flush();
    public virtual bool TryGetExtent(long offset, out bool isData, out long length) => Inner.TryGetExtent(offset, out isData, out length);

    /// <inheritdoc/>
    public virtual void Dispose()
    {
        Inner.Dispose();
        GC.SuppressFinalize(this);
    }
}
