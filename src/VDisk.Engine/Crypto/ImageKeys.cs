// The passphrases an operation may use to open encrypted images (QEMU's --object secret for one command): set
// once around an operation, seen by every image it opens in that flow, whichever layer of a chain, and tried
// against every active key slot. Scoping them to the operation keeps them out of every options type.
namespace VDisk.Engine.Crypto;

/// <summary>The passphrases available to images opened in the current asynchronous flow.</summary>
public static class ImageKeys
{
    private static readonly AsyncLocal<IReadOnlyList<Passphrase>?> CurrentKeys = new();

    /// <summary>The passphrases in scope (empty when none).</summary>
    public static IReadOnlyList<Passphrase> Current => CurrentKeys.Value ?? Array.Empty<Passphrase>();

    /// <summary>
    /// Makes <paramref name="passphrases"/> available, tried before any already in scope, until the result is disposed.
    /// The caller keeps ownership of the passphrases.
    /// </summary>
    public static IDisposable Use(IEnumerable<Passphrase> passphrases)
    {
        var previous = CurrentKeys.Value;
        CurrentKeys.Value = passphrases.Concat(previous ?? Array.Empty<Passphrase>()).ToArray(); // the most specific first
        return new Scope(previous);
    }

    private sealed class Scope(IReadOnlyList<Passphrase>? previous) : IDisposable
    {
        public void Dispose() => CurrentKeys.Value = previous;
    }
}
