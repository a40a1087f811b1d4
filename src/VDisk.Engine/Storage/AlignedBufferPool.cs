// Buffers for direct I/O (DESIGN.md "Storage alignment"): O_DIRECT needs memory, offsets and lengths aligned
// to the device's block size. Buffers come from a pool of native memory aligned to 4 KiB, in power-of-two
// size classes, so bulk copies (convert, compare) hand aligned memory straight to the kernel and the odd
// unaligned request bounces through a pooled buffer instead of a fresh allocation per call.
using System.Buffers;
using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.InteropServices;

namespace VDisk.Engine.Storage;

/// <summary>A pool of 4 KiB-aligned native buffers. Thread-safe.</summary>
public sealed class AlignedBufferPool
{
    /// <summary>The alignment of every buffer (and of direct I/O on the hosts VDisk runs on).</summary>
    public const int Alignment = 4096;
    private const int MinClass = 12, MaxClass = 23;  // 4 KiB .. 8 MiB are pooled; larger buffers are not
    private const int KeptPerClass = 16;
    private readonly ConcurrentBag<Buffer>[] _classes = Enumerable.Range(0, MaxClass + 1).Select(_ => new ConcurrentBag<Buffer>()).ToArray();

    /// <summary>The process-wide pool.</summary>
    public static AlignedBufferPool Shared { get; } = new();

    /// <summary>A buffer of exactly <paramref name="length"/> bytes, aligned to <see cref="Alignment"/>; dispose it to return it.</summary>
    public IMemoryOwner<byte> Rent(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        int sizeClass = Math.Max(MinClass, BitOperations.Log2(BitOperations.RoundUpToPowerOf2((uint)Math.Max(length, 1))));
        var buffer = sizeClass <= MaxClass && _classes[sizeClass].TryTake(out var pooled) ? pooled : new Buffer(this, sizeClass);
        buffer.Lease(length);
        return buffer;
    }

    private void Return(Buffer buffer)
    {
        if (buffer.SizeClass <= MaxClass && _classes[buffer.SizeClass].Count < KeptPerClass) _classes[buffer.SizeClass].Add(buffer);
        else buffer.Free();
    }

    /// <summary>Native aligned memory exposed as <see cref="Memory{T}"/>.</summary>
    private sealed unsafe class Buffer : MemoryManager<byte>
    {
        private readonly AlignedBufferPool _pool;
        private void* _memory;
        private int _length;
        private bool _leased;

        public Buffer(AlignedBufferPool pool, int sizeClass)
        {
            _pool = pool;
            SizeClass = sizeClass;
            _memory = NativeMemory.AlignedAlloc((nuint)1 << sizeClass, Alignment);
        }

        public int SizeClass { get; }

        public void Lease(int length)
        {
            _length = length;
            _leased = true;
        }

        public override Span<byte> GetSpan() => new(_memory, _length);

        public override MemoryHandle Pin(int elementIndex = 0) => new((byte*)_memory + elementIndex);

        public override void Unpin() { }

        public void Free()
        {
            if (_memory == null) return;
            NativeMemory.AlignedFree(_memory);
            _memory = null;
        }

        protected override void Dispose(bool disposing)
        {
            if (!_leased) return; // returned already
            _leased = false;
            _pool.Return(this);
        }
    }
}
