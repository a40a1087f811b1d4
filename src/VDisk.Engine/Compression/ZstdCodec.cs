// zstd compression for qcow2 clusters: the system's libzstd when the host has one (on Linux it nearly
// always does: qemu, apt and systemd depend on it), else ZstdSharp, the pure C# port. Both write plain
// zstd frames. The native library matters for short jobs: ZstdSharp's large methods run as unoptimised
// tier-0 code until the JIT recompiles them, which costs about a second in a typical conversion.
using System.Runtime.InteropServices;

namespace VDisk.Engine.Compression;

/// <summary>A single-threaded zstd compressor; create one per worker thread.</summary>
public interface IZstdCompressor : IDisposable
{
    /// <summary>Compresses <paramref name="input"/> into one zstd frame; false when it does not fit <paramref name="output"/>.</summary>
    bool TryCompress(ReadOnlySpan<byte> input, Span<byte> output, out int written);
}

/// <summary>Creates zstd compressors.</summary>
public static unsafe class ZstdCodec
{
    private static readonly string[] LibraryNames = { "libzstd.so.1", "libzstd.so", "libzstd.1.dylib", "libzstd.dylib", "libzstd.dll", "zstd.dll" };
    private static readonly Lazy<NativeApi?> Native = new(LoadNative);

    /// <summary>True when the system's libzstd is in use.</summary>
    public static bool UsesNativeLibrary => Native.Value != null;

    /// <summary>A compressor at <paramref name="level"/>: native when available and <paramref name="preferNative"/>, else managed.</summary>
    public static IZstdCompressor Create(int level, bool preferNative = true)
        => preferNative && Native.Value is { } api ? new NativeCompressor(api, level) : new ManagedCompressor(level);

    private sealed class NativeApi
    {
        public required delegate* unmanaged<nint> CreateContext;
        public required delegate* unmanaged<nint, nuint> FreeContext;
        public required delegate* unmanaged<nint, byte*, nuint, byte*, nuint, int, nuint> CompressWithContext;
        public required delegate* unmanaged<nuint, uint> IsError;
    }

    private static NativeApi? LoadNative()
    {
        foreach (var name in LibraryNames)
        {
            if (!NativeLibrary.TryLoad(name, out nint library)) continue;
            if (NativeLibrary.TryGetExport(library, "ZSTD_createCCtx", out nint create)
                && NativeLibrary.TryGetExport(library, "ZSTD_freeCCtx", out nint free)
                && NativeLibrary.TryGetExport(library, "ZSTD_compressCCtx", out nint compress)
                && NativeLibrary.TryGetExport(library, "ZSTD_isError", out nint isError))
            {
                return new NativeApi
                {
                    CreateContext = (delegate* unmanaged<nint>)create,
                    FreeContext = (delegate* unmanaged<nint, nuint>)free,
                    CompressWithContext = (delegate* unmanaged<nint, byte*, nuint, byte*, nuint, int, nuint>)compress,
                    IsError = (delegate* unmanaged<nuint, uint>)isError,
                };
            }
            NativeLibrary.Free(library);
        }
        return null;
    }

    private sealed class NativeCompressor : IZstdCompressor
    {
        private readonly NativeApi _api;
        private readonly int _level;
        private nint _context;

        public NativeCompressor(NativeApi api, int level)
        {
            _api = api;
            _level = level;
            _context = api.CreateContext();
            if (_context == 0) throw new OutOfMemoryException("ZSTD_createCCtx failed");
        }

        public bool TryCompress(ReadOnlySpan<byte> input, Span<byte> output, out int written)
        {
            fixed (byte* source = input)
            fixed (byte* destination = output)
            {
                nuint result = _api.CompressWithContext(_context, destination, (nuint)output.Length, source, (nuint)input.Length, _level);
                written = _api.IsError(result) != 0 ? 0 : (int)result;
                return _api.IsError(result) == 0;
            }
        }

        public void Dispose()
        {
            if (_context != 0) _api.FreeContext(_context);
            _context = 0;
        }
    }

    private sealed class ManagedCompressor(int level) : IZstdCompressor
    {
        private readonly ZstdSharp.Compressor _compressor = new(level);

        public bool TryCompress(ReadOnlySpan<byte> input, Span<byte> output, out int written) => _compressor.TryWrap(input, output, out written);

        public void Dispose() => _compressor.Dispose();
    }
}
