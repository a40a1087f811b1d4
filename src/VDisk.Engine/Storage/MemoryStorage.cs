// In-memory storage for tests and scratch images (DESIGN.md "Storage": in-memory storage for tests).
namespace VDisk.Engine.Storage;

/// <summary>A growable byte array behind the <see cref="IStorage"/> interface. Thread-safe.</summary>
public sealed class MemoryStorage : IStorage
{
    private readonly object _lock = new();
    private byte[] _bytes;
    private long _length;

    /// <summary>Creates an empty storage, or one holding a copy of <paramref name="initial"/>.</summary>
    public MemoryStorage(string name = "memory", byte[]? initial = null, bool canWrite = true)
    {
        Name = name;
        _bytes = initial is null ? new byte[4096] : (byte[])initial.Clone();
        _length = initial?.Length ?? 0;
        CanWrite = canWrite;
    }

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public bool CanWrite { get; }
    /// <inheritdoc/>
    public CacheMode CacheMode => CacheMode.Writeback;
    /// <inheritdoc/>
    public long Length { get { lock (_lock) return _length; } }
    /// <inheritdoc/>
    public long AllocatedBytes => Length;

    /// <summary>Number of Flush calls, for tests of write ordering.</summary>
    public int FlushCount { get; private set; }

    /// <summary>A copy of the current content.</summary>
    public byte[] ToArray() { lock (_lock) return _bytes.AsSpan(0, (int)_length).ToArray(); }

    /// <inheritdoc/>
    public void ReadAt(long offset, Span<byte> buffer)
    {
        lock (_lock)
        {
            buffer.Clear();
            if (offset >= _length) return;
            int n = (int)Math.Min(buffer.Length, _length - offset);
            _bytes.AsSpan((int)offset, n).CopyTo(buffer);
        }
    }

    /// <inheritdoc/>
    public void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        if (!CanWrite) throw new IOException($"{Name} is read-only.");
        lock (_lock)
        {
            EnsureLength(offset + data.Length);
            data.CopyTo(_bytes.AsSpan((int)offset));
        }
    }

    /// <inheritdoc/>
    public void Discard(long offset, long length) => WriteZeroes(offset, Math.Min(length, Math.Max(0, Length - offset)));

    /// <inheritdoc/>
    public void WriteZeroes(long offset, long length)
    {
        if (length <= 0) return;
        lock (_lock)
        {
            EnsureLength(offset + length);
            _bytes.AsSpan((int)offset, (int)length).Clear();
        }
    }

    /// <inheritdoc/>
    public void Preallocate(long offset, long length) { lock (_lock) EnsureLength(offset + length); }

    /// <inheritdoc/>
    public void SetLength(long length)
    {
        lock (_lock)
        {
            EnsureLength(length);
            if (length < _length) _bytes.AsSpan((int)length, (int)(_length - length)).Clear();
            _length = length;
        }
    }

    /// <inheritdoc/>
    public void Flush() => FlushCount++;

    /// <inheritdoc/>
    public bool TryGetExtent(long offset, out bool isData, out long length)
    {
        isData = true;
        length = Length - offset;
        return false;
    }

    /// <inheritdoc/>
    public void Dispose() { }

    private void EnsureLength(long length)
    {
        if (length > Array.MaxLength) throw new IOException($"{Name}: memory storage limited to {Array.MaxLength} bytes.");
        if (length > _bytes.Length)
        {
            long capacity = Math.Max(length, Math.Min((long)_bytes.Length * 2, Array.MaxLength));
            Array.Resize(ref _bytes, (int)capacity);
        }
        if (length > _length) _length = length;
    }
}
