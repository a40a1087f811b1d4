// Deflate with a chosen window size through the .NET runtime's own native zlib (zlib-ng since .NET 9),
// exported by System.IO.Compression.Native. QEMU inflates qcow2 clusters with windowBits -12 (raw
// deflate, 4 KiB window); System.IO.Compression's streams cannot be told to limit the window, so we
// call deflateInit2 ourselves. See README "Compression" for why this and not a managed encoder.
using System.Runtime.InteropServices;

namespace VDisk.Engine.Compression;

/// <summary>One-shot deflate of a buffer with explicit window bits and level.</summary>
public static unsafe partial class NativeDeflate
{
    internal const string Library = "System.IO.Compression.Native";
    private const int Deflated = 8, Finish = 4, StreamEnd = 1, DefaultStrategy = 0;
    private const int MemLevel = 8;

    /// <summary>The runtime's PAL_ZStream (shared with the tests' strict inflater).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ZStream
    {
        public byte* NextIn;
        public byte* NextOut;
        public nint Message;
        public nint InternalState;
        public uint AvailIn;
        public uint AvailOut;
    }

    [LibraryImport(Library, EntryPoint = "CompressionNative_DeflateInit2_")]
    private static partial int DeflateInit2(ZStream* stream, int level, int method, int windowBits, int memLevel, int strategy);

    [LibraryImport(Library, EntryPoint = "CompressionNative_Deflate")]
    private static partial int Deflate(ZStream* stream, int flush);

    [LibraryImport(Library, EntryPoint = "CompressionNative_DeflateEnd")]
    private static partial int DeflateEnd(ZStream* stream);

    private static readonly Lazy<bool> Loadable = new(() =>
    {
        try
        {
            Span<byte> output = stackalloc byte[64];
            return TryCompressCore("probe"u8, output, 6, -12, out _);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    });

    /// <summary>True when the runtime's native deflate can be called on this host.</summary>
    public static bool IsAvailable => Loadable.Value;

    /// <summary>
    /// Compresses <paramref name="input"/> into <paramref name="output"/>. <paramref name="windowBits"/> follows zlib:
    /// -9..-15 raw deflate with a 2^|bits| window, 9..15 zlib-wrapped. Returns false when the result does not fit.
    /// </summary>
    public static bool TryCompress(ReadOnlySpan<byte> input, Span<byte> output, int level, int windowBits, out int written)
    {
        written = 0;
        return IsAvailable && TryCompressCore(input, output, level, windowBits, out written);
    }

    private static bool TryCompressCore(ReadOnlySpan<byte> input, Span<byte> output, int level, int windowBits, out int written)
    {
        written = 0;
        var stream = default(ZStream);
        if (DeflateInit2(&stream, level, Deflated, windowBits, MemLevel, DefaultStrategy) != 0)
            throw new InvalidOperationException($"deflateInit2(level {level}, windowBits {windowBits}) failed");
        try
        {
            fixed (byte* inPtr = input)
            fixed (byte* outPtr = output)
            {
                stream.NextIn = inPtr;
                stream.AvailIn = (uint)input.Length;
                stream.NextOut = outPtr;
                stream.AvailOut = (uint)output.Length;
                int result = Deflate(&stream, Finish);
                if (result != StreamEnd) return false; // output full (Z_OK / Z_BUF_ERROR)
                written = output.Length - (int)stream.AvailOut;
                return true;
            }
        }
        finally
        {
            DeflateEnd(&stream);
        }
    }
}
