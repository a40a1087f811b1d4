// Warnings an operation passes up to its caller (DESIGN.md "Operations"). Code deep under an operation, such as a
// file storage that had to reserve space by writing zeroes because the file system has no fallocate, notes a
// warning; the operation collects what was noted while it ran (on any of its threads) and returns it in its result,
// and the cmdlet shows each with WriteWarning.
namespace VDisk.Engine.Core;

/// <summary>Collects the warnings noted during one operation.</summary>
internal static class OperationWarnings
{
    private static readonly AsyncLocal<Collector?> Current = new();

    /// <summary>Starts collecting on this thread and the tasks it starts, until the collector is disposed.</summary>
    public static Collector Collect()
    {
        var collector = new Collector(Current.Value);
        Current.Value = collector;
        return collector;
    }

    /// <summary>Notes a warning for the operation running on this thread (ignored outside one; repeats are dropped).</summary>
    public static void Add(string message) => Current.Value?.Add(message);

    /// <summary>The warnings of one operation.</summary>
    public sealed class Collector : IDisposable
    {
        private readonly Collector? _previous;
        private readonly List<string> _messages = new();

        internal Collector(Collector? previous) => _previous = previous;

        /// <summary>The warnings noted so far, in order.</summary>
        public IReadOnlyList<string> Messages
        {
            get { lock (_messages) return _messages.ToArray(); }
        }

        internal void Add(string message)
        {
            lock (_messages)
                if (!_messages.Contains(message)) _messages.Add(message);
        }

        /// <summary>Stops collecting; an enclosing operation's collector (if any) is current again.</summary>
        public void Dispose() => Current.Value = _previous;
    }
}
