class FlatIndex: pass
class SearchResult: pass
def load(path, mmap=True): pass
