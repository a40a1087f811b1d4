// A secret that unlocks an encrypted image (QEMU's "secret" object): UTF-8 bytes in a pinned buffer, zeroed on
// Dispose, never shown by ToString. Built from characters (SecureString, PSCredential) or from the first line
// of a file (QEMU's secret,file= reads a whole file verbatim; VDisk stops at the first line ending, so a key file
// written with a trailing newline works too).
using System.Security.Cryptography;
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Crypto;

/// <summary>A passphrase as the bytes key derivation uses. Dispose zeroes them.</summary>
public sealed class Passphrase : IDisposable
{
    private readonly byte[] _bytes;
    private readonly int _length;
    private bool _disposed;

    private Passphrase(byte[] pinned, int length)
    {
        _bytes = pinned;
        _length = length;
    }

    /// <summary>The UTF-8 bytes. Valid until <see cref="Dispose"/>.</summary>
    public ReadOnlySpan<byte> Bytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _bytes.AsSpan(0, _length);
        }
    }

    /// <summary>Encodes <paramref name="characters"/> as UTF-8 into a pinned buffer (the caller zeroes its own copy).</summary>
    public static Passphrase FromChars(ReadOnlySpan<char> characters)
    {
        var pinned = GC.AllocateArray<byte>(Encoding.UTF8.GetMaxByteCount(characters.Length), pinned: true);
        int length = Encoding.UTF8.GetBytes(characters, pinned);
        return new Passphrase(pinned, length);
    }

    /// <summary>Copies raw bytes (already UTF-8) into a pinned buffer.</summary>
    public static Passphrase FromBytes(ReadOnlySpan<byte> bytes)
    {
        var pinned = GC.AllocateArray<byte>(bytes.Length, pinned: true);
        bytes.CopyTo(pinned);
        return new Passphrase(pinned, bytes.Length);
    }

    /// <summary>
    /// The first line of <paramref name="path"/> (without its line ending); QEMU's <c>secret,file=</c> reads the same
    /// bytes from a file that has no line ending. An empty or missing file is an error naming the file, never its content.
    /// </summary>
    public static Passphrase FromFile(string path)
    {
        byte[] content;
        try { content = File.ReadAllBytes(path); }
        catch (FileNotFoundException) { throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: the passphrase file does not exist."); }
        catch (DirectoryNotFoundException) { throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: the passphrase file does not exist."); }
        try
        {
            int end = content.AsSpan().IndexOfAny((byte)'\n', (byte)'\r');
            if (end < 0) end = content.Length;
            if (end == 0) throw VDiskException.Invalid(path, $"{path}: the passphrase file's first line is empty.");
            return FromBytes(content.AsSpan(0, end));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
        }
    }

    /// <summary>Never the secret.</summary>
    public override string ToString() => "(passphrase)";

    /// <summary>Zeroes the bytes.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        CryptographicOperations.ZeroMemory(_bytes);
    }
}
